package cli

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// Permute moves flags (and their values) in front of the positional
// arguments, so that "loco-scan img --reg reg" works: urfave/cli v2, like
// Go's flag package, stops parsing flags at the first positional argument.
// Everything after "--" stays positional.
func Permute(args []string, flags []cli.Flag) []string {
	boolean := map[string]bool{}
	for _, f := range flags {
		_, isBool := f.(*cli.BoolFlag)
		for _, n := range f.Names() {
			boolean[n] = isBool
		}
	}
	var opts, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if len(a) < 2 || a[0] != '-' {
			pos = append(pos, a)
			continue
		}
		opts = append(opts, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if isBool, known := boolean[name]; known && !isBool && i+1 < len(args) {
			i++
			opts = append(opts, args[i])
		}
	}
	if len(pos) == 0 {
		return opts
	}
	return append(append(opts, "--"), pos...)
}
