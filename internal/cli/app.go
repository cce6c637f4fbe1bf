package cli

import (
	"io"

	"github.com/urfave/cli/v2"
)

// Run runs a urfave/cli App in-process: output goes to stdout/stderr, errors
// are printed by a Reporter in the loco format (flag parsing errors become
// *UsageError, exit code ExitUsage; do not mark flags Required, check them
// in the action and return Usagef), and the exit code is
// returned instead of calling os.Exit.
func Run(app *cli.App, args []string, stdout, stderr io.Writer) int {
	app.Writer = stdout
	app.ErrWriter = stderr
	app.ExitErrHandler = func(*cli.Context, error) {} // never os.Exit
	app.HideHelpCommand = true
	app.UseShortOptionHandling = false
	rep := NewReporter(app.Name, stderr)
	app.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
		return &UsageError{Err: err}
	}
	err := app.Run(append([]string{app.Name}, args...))
	return rep.Fail(err)
}
