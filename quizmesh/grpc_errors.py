"""How quizmesh's services tell clients which domain error refused a call, beyond the status code."""

from typing import Final

# Trailing-metadata key carrying the stable error code (e.g. "nickname_taken") of a refused call.
ERROR_CODE_METADATA_KEY: Final = "quizmesh-error-code"
# Trailing-metadata key carrying, for a quiz refused by the rules, the position (0-based) of the
# question at fault, so that a reader of a spreadsheet can name the row it came from.
QUESTION_INDEX_METADATA_KEY: Final = "quizmesh-question-index"
