// Package cli holds the plumbing shared by the loco-* commands: the error
// and warning line format ("loco-<tool>: error: ..."), exit codes, the
// --progress=auto|always|never switch, and output files that are written
// under a temporary name and renamed into place only on success.
//
// Mains are written as run(args, stdin, stdout, stderr) int so that tests can
// call them in-process; nothing here calls os.Exit.
package cli
