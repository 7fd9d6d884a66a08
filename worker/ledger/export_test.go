package ledger

// Exported for the tests of package ledger_test, which provision the
// bucket through package worker (an import cycle from inside).
var (
	CreateTTL  = (*Ledger).createTTL
	CreateJSON = (*Ledger).createJSON
)
