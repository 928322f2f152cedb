"""The controlled study (docs/study.md): each claim of the paper answered against its control."""
