"""Reading Sage X3 for every flow: the ledger snapshot refreshed by update stamps
(snapshot.py), what a run stages (scope.py), quarantine wording, the change-sensor factory."""
