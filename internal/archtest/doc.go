// Package archtest holds tests of the shape of the codebase: every package
// has a doc comment, and imports follow the architecture's direction. It has
// no non-test code.
package archtest
