"""Mail outreach reads: parsing, classification, matching and what each message does."""
