// Package testsupport is what the tests of several packages share: a TCP
// fault proxy, the commands of the module built once per test binary
// (ftvm, ftvm-witness), bare-metal RISC-V programs assembled with the
// machine's link script, the "tool or guest missing" rule (a skip, or a
// failure with FTVM_REQUIRE_ALL=1), Ethernet/IPv4/TCP frames with
// checksums, an in-memory disk, and running a test alone in a fresh
// process. Only tests import it.
package testsupport
