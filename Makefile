# The two commands that matter (see README.md):
#   make demo   build the default guest and ftvm if needed, then run the fault-tolerance demo
#   make test   install what the tests need, build the guest, run every test
# make run boots the default guest unreplicated.

GO ?= go
ARGS ?=

.PHONY: demo run test build guest bench

build:
	$(GO) build -o bin/ftvm ./cmd/ftvm
	$(GO) build -o bin/ftvm-witness ./cmd/ftvm-witness

guest:
	./scripts/setup.sh

demo: guest build
	./bin/ftvm demo $(ARGS)

run: guest build
	./bin/ftvm run $(ARGS)

# FTVM_REQUIRE_ALL turns "tool or guest missing" skips into failures, so a
# broken install step cannot hide behind a green run.
# The multi-hart programs run again under the race detector: in parallel
# mode the harts are goroutines sharing the machine.
test: guest
	@unformatted=$$(gofmt -l .); if [ -n "$$unformatted" ]; then echo "gofmt needed:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	FTVM_REQUIRE_ALL=1 $(GO) test -timeout 20m ./...
	FTVM_REQUIRE_ALL=1 $(GO) test -race -timeout 10m -run '^TestSMP' ./machine

bench: guest build
	./bin/ftvm bench $(ARGS)
