"""How quizmesh's services tell clients which domain error refused a call, beyond the status code."""

from typing import Final

# Trailing-metadata key carrying the stable error code (e.g. "nickname_taken") of a refused call.
ERROR_CODE_METADATA_KEY: Final = "quizmesh-error-code"
