package cli

import "github.com/urfave/cli/v2"

// ProgressFlag is the --progress flag every tool takes (checked by
// ParseProgress); note, if not empty, is added to its usage line.
func ProgressFlag(note string) *cli.StringFlag {
	usage := "progress on stderr: auto (if a terminal), always, never"
	if note != "" {
		usage += " (" + note + ")"
	}
	return &cli.StringFlag{Name: "progress", Value: string(ProgressAuto), Usage: usage}
}
