// Package envflag gives every flag of a FlagSet an environment variable to
// fall back to, as the commands of this repository document it: the flag
// -feedback-addr of a command with prefix FEEDBACK_PROXY_ is also
// FEEDBACK_PROXY_FEEDBACK_ADDR. A flag given on the command line wins.
package envflag

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// Name is the environment variable the flag falls back to.
func Name(prefix, flagName string) string {
	return prefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// Parse parses args into fs, then sets every flag not given there from its
// environment variable, when that is set. An invalid value names the
// variable. Arguments left over are an error: every setting is a flag.
func Parse(fs *flag.FlagSet, args []string, prefix string, getenv func(string) string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q; all settings are flags", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		name := Name(prefix, f.Name)
		if v := getenv(name); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", name, v, err))
			}
		}
	})
	return errors.Join(errs...)
}
