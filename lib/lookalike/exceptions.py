"""Exceptions raised by lookalike. One base class, one subclass per kind of failure."""


class LookalikeError(Exception):
    """Base class for every error lookalike raises on purpose."""


class ConfigError(LookalikeError, ValueError):
    """A parameter or config file is wrong; the message names the value and the fix."""


class ManifestError(LookalikeError):
    """A manifest or other run file is missing or lacks a required column."""


class WeightsError(LookalikeError):
    """Real VGG16 ImageNet weights could not be found, fetched or verified."""


class ImageError(LookalikeError):
    """An image could not be decoded safely (corrupt, not an image, too large, a bomb)."""


class ScrapeError(LookalikeError):
    """The catalog scrape cannot go on (for example the first listing page is unreachable)."""


class LogoFetchError(LookalikeError):
    """The logo stage cannot go on (for example the domain list is unreadable)."""


class RunError(LookalikeError):
    """A notebook failed while ``lookalike run`` executed it."""
