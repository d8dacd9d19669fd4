// Package migrations holds the sample AgenticHR tenant migrations, embedded so the demo runs from any
// directory.
package migrations

import "embed"

// Files are the versioned SQL files, applied in order to every tenant schema.
//
//go:embed *.sql
var Files embed.FS
