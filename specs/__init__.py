"""specs: the declarative safety-spec language (TOML), its frozen values and its lowering to shield rules."""

__all__: list[str] = []
