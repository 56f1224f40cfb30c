"""Per-video failures: raised inside a stage, turned into one failures row by the pipeline."""


class MediaError(Exception):
    """A video that cannot go through a stage; the message says why in words a user can act on."""


class EmptyFile(MediaError):
    pass


class NotAVideo(MediaError):
    pass


class NoVideoStream(MediaError):
    pass


class AbsurdInput(MediaError):
    pass


class DecodeError(MediaError):
    pass


class TruncatedVideo(MediaError):
    pass


class ImplausibleTiming(MediaError):
    """Container timing that cannot be right (a zero time scale, zero or absurd frame durations):
    the video fails rather than enter the corpus with a bogus duration."""


class WatchdogTimeout(TimeoutError):
    """A probe or decode that ran past its wall-clock limit (`probe.timeout_s`, `decode.timeout_s`):
    a stuck read becomes a failures row, and, since it may not recur, it is never staged as final."""
