"""The controlled study (issue 25): each claim of the paper answered against its control."""
