package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"ftvm/replication"
)

// Memory errors on purpose: -inject-bitflip flips a bit of the replica's
// guest memory some time after it starts (for the repair's trials), and
// POST /inject-bitflip on the status port does it on demand.

type flipFlags struct {
	spec  string
	after time.Duration
	// inject is the replica's injector (nil: this mode cannot).
	inject func(ctx context.Context, f replication.BitFlip) (replication.BitFlip, error)
}

func (f *flipFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.spec, "inject-bitflip", "", "flip one bit of this replica's guest memory, as a memory error would: `random` or PAGE[:BYTE[:BIT]] (for repair trials; also POST /inject-bitflip?page=&byte=&bit= on -http)")
	fs.DurationVar(&f.after, "inject-after", 5*time.Second, "when -inject-bitflip flips its bit, after the replica starts")
}

// parseFlip reads random or PAGE[:BYTE[:BIT]].
func parseFlip(s string) (replication.BitFlip, error) {
	f := replication.BitFlip{Page: -1, Offset: -1, Bit: -1}
	if s == "random" {
		return f, nil
	}
	for i, part := range strings.SplitN(s, ":", 3) {
		n, err := strconv.Atoi(part)
		if err != nil || n < 0 {
			return f, fmt.Errorf("-inject-bitflip %q: want random or PAGE[:BYTE[:BIT]]", s)
		}
		switch i {
		case 0:
			f.Page = n
		case 1:
			f.Offset = n
		case 2:
			f.Bit = n
		}
	}
	return f, nil
}

// schedule flips the bit -inject-after after ctx's start.
func (f *flipFlags) schedule(ctx context.Context) error {
	if f.spec == "" {
		return nil
	}
	bf, err := parseFlip(f.spec)
	if err != nil {
		return err
	}
	if f.inject == nil {
		return errors.New("-inject-bitflip: this replication mode cannot repair a corrupted replica")
	}
	go func() {
		select {
		case <-time.After(f.after):
		case <-ctx.Done():
			return
		}
		got, err := f.inject(ctx, bf)
		if err != nil {
			fmt.Fprintf(os.Stderr, "ftvm: -inject-bitflip: %v\n", err)
			return
		}
		fmt.Fprintf(os.Stderr, "ftvm: flipped bit %d of byte %d of guest page %d\n", got.Bit, got.Offset, got.Page)
	}()
	return nil
}

// handler serves POST /inject-bitflip beside h.
func (f *flipFlags) handler(h http.Handler) http.Handler {
	if f.inject == nil {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("/", h)
	mux.HandleFunc("/inject-bitflip", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		bf := replication.BitFlip{Page: -1, Offset: -1, Bit: -1}
		for _, p := range []struct {
			name string
			v    *int
		}{{"page", &bf.Page}, {"byte", &bf.Offset}, {"bit", &bf.Bit}} {
			if s := r.URL.Query().Get(p.name); s != "" {
				n, err := strconv.Atoi(s)
				if err != nil || n < 0 {
					http.Error(w, "bad "+p.name, http.StatusBadRequest)
					return
				}
				*p.v = n
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
		defer cancel()
		got, err := f.inject(ctx, bf)
		if err != nil {
			http.Error(w, err.Error(), http.StatusConflict)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]int{"page": got.Page, "byte": got.Offset, "bit": got.Bit})
	})
	return mux
}
