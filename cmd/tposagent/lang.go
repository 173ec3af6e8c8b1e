package main

import (
	"flag"
	"os"

	"github.com/tposagent/tposagent/internal/i18n"
)

// The CLI's human output (status, license, doctor, open) follows the
// locale: LC_ALL, LC_MESSAGES or LANG (tr_TR.UTF-8 gives Turkish), else the
// OS's UI language on Windows; --lang tr|en overrides both. Logs stay
// English and --json has no language.

// langFlag lets a subcommand take --lang after its name.
func addLangFlag(fs *flag.FlagSet, e *env) {
	fs.Func("lang", "language of the output: tr or en (default: from LANG / the OS)", func(s string) error {
		return setLang(e, s)
	})
}

func setLang(e *env, s string) error {
	l, ok := i18n.Parse(s)
	if !ok {
		return usageErrorf("--lang %q: want tr or en", s)
	}
	e.lang = l
	return nil
}

// language is the language of the human output.
func (e *env) language() i18n.Lang {
	if e.lang != "" {
		return e.lang
	}
	lookup := e.lookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	return i18n.FromEnv(lookup, systemLanguage())
}
