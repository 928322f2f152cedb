"""The errors a user can cause. Stage commands turn each into one line naming the file,
key or value (``stages.common.friendly_errors``); anything else is a bug and keeps its
traceback."""


class ParamsError(ValueError):
    """A problem in params.yaml; the message names the file and the key."""


class DataError(ValueError):
    """Bad input data; the message names the file and, where there is one, the line."""


class CheckpointError(ValueError):
    """A checkpoint or cache that does not fit the model, the label schema or the data."""
