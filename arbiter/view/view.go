// Package view is the replicated pair's configuration as the arbiter stores
// it: a generation, the replica allowed to be live and the one protecting
// it. Package arbiter stores and swaps views; the replication layer
// reasons about them.
package view

import (
	"errors"
	"fmt"
	"unicode"
	"unicode/utf8"
)

// View is the replica pair's configuration, stored under one key per
// cluster.
type View struct {
	Generation uint64 // bumped by every change; 0 only in the zero View, "no view yet"
	Primary    string // replica id allowed to be live
	Backup     string // replica id protecting it ("" = running unprotected)
}

// IsZero reports whether v is the zero View, which stands for "no view
// stored yet".
func (v View) IsZero() bool { return v == View{} }

// Next returns the view that follows v with the given primary and backup.
func (v View) Next(primary, backup string) View {
	return View{Generation: v.Generation + 1, Primary: primary, Backup: backup}
}

func (v View) String() string {
	switch {
	case v.IsZero():
		return "no view"
	case v.Backup == "":
		return fmt.Sprintf("generation %d (primary %q, unprotected)", v.Generation, v.Primary)
	}
	return fmt.Sprintf("generation %d (primary %q, backup %q)", v.Generation, v.Primary, v.Backup)
}

// Validate checks a non-zero view: a generation, a primary, and a backup
// that is not the primary.
func (v View) Validate() error {
	if v.Generation == 0 {
		return errors.New("generation 0 is reserved for the zero View")
	}
	if err := checkID("primary", v.Primary); err != nil {
		return err
	}
	if v.Backup != "" {
		if err := checkID("backup", v.Backup); err != nil {
			return err
		}
		if v.Backup == v.Primary {
			return fmt.Errorf("replica %q cannot be its own backup", v.Primary)
		}
	}
	return nil
}

// maxID bounds replica ids: they are names, not payloads.
const maxID = 256

// checkID accepts a non-empty printable id of at most maxID bytes.
func checkID(what, id string) error {
	if id == "" {
		return fmt.Errorf("%s id is empty", what)
	}
	if len(id) > maxID {
		return fmt.Errorf("%s id is %d bytes long (at most %d)", what, len(id), maxID)
	}
	if !utf8.ValidString(id) {
		return fmt.Errorf("%s id %q is not UTF-8", what, id)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%s id %q holds an unprintable character", what, id)
		}
	}
	return nil
}
