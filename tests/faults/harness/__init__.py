"""The fault-injection harness (reliability.md §4.1): ledger, supervisor, checker, scenarios."""
