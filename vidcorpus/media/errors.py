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
