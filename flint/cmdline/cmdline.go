// Package cmdline reads an OSv command line — what `flint pack --cmd` takes
// and what an OSv disk stores at byte 512 — into the image config's
// command, environment and working directory.
//
// OSv's syntax (shared/design.md §3): words split at spaces, grouped by
// double quotes (no escapes; single quotes do not group); leading options
// such as --env=K=V and --cwd=DIR; commands separated by ';' or '&'.
// Feather runs one command per container and writes its own options in
// front of it, so Parse lifts --env and --cwd into the config, keeps other
// leading options as the command's first words (OSv still reads them as
// options) and refuses several commands.
package cmdline

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// Command is an OSv command line as an image config carries it.
type Command struct {
	// Args are the words of the command, leading OSv options included.
	Args []string
	// Env are the --env= options' K=V.
	Env []string
	// Cwd is the last --cwd= option's directory.
	Cwd string
}

// Parse reads an OSv command line. It returns an ErrInvalidArgument error
// for an unterminated quote, several commands, or no command.
func Parse(s string) (Command, error) {
	words, err := split(s)
	if err != nil {
		return Command{}, err
	}
	var c Command
	i := 0
	for ; i < len(words) && strings.HasPrefix(words[i].text, "--"); i++ {
		w := words[i].text
		switch {
		case strings.HasPrefix(w, "--env="):
			kv := strings.TrimPrefix(w, "--env=")
			if !strings.Contains(kv, "=") || strings.HasPrefix(kv, "=") {
				return Command{}, fmt.Errorf("command line %q: %s is not --env=KEY=VALUE: %w", s, w, errdefs.ErrInvalidArgument)
			}
			c.Env = append(c.Env, kv)
		case strings.HasPrefix(w, "--cwd="):
			c.Cwd = strings.TrimPrefix(w, "--cwd=")
		default:
			c.Args = append(c.Args, w)
		}
	}
	options := len(c.Args)
	for _, w := range words[i:] {
		if w.sep != 0 {
			return Command{}, fmt.Errorf("command line %q runs several commands (%q): Feather runs one command per container: %w", s, string(w.sep), errdefs.ErrInvalidArgument)
		}
		c.Args = append(c.Args, w.text)
	}
	if len(c.Args) == options {
		return Command{}, fmt.Errorf("command line %q has options but no command to run: %w", s, errdefs.ErrInvalidArgument)
	}
	return c, nil
}

// word is a word of a command line, or (sep != 0) an unquoted ';' or '&'.
type word struct {
	text string
	sep  byte
}

// split cuts s into words at unquoted blanks; a trailing ';' ends the last
// command and is dropped.
func split(s string) ([]word, error) {
	var (
		words  []word
		cur    strings.Builder
		inWord bool
		quoted bool
	)
	end := func() {
		if inWord {
			words = append(words, word{text: cur.String()})
			cur.Reset()
			inWord = false
		}
	}
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == '"':
			quoted = !quoted
			inWord = true
		case quoted:
			cur.WriteByte(ch)
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			end()
		case ch == ';' || ch == '&':
			end()
			words = append(words, word{sep: ch})
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("command line %q: unterminated double quote: %w", s, errdefs.ErrInvalidArgument)
	}
	end()
	for len(words) > 0 && words[len(words)-1].sep == ';' {
		words = words[:len(words)-1]
	}
	if len(words) == 0 {
		return nil, fmt.Errorf("command line is empty: %w", errdefs.ErrInvalidArgument)
	}
	return words, nil
}
