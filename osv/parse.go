package osv

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
)

// Line is an OSv command line as its loader reads it.
type Line struct {
	// Options are the leading loader options, their escapes undone:
	// "--env=K=a b".
	Options []string
	// Commands are the commands after them, in order.
	Commands []Command
}

// Command is one command of a Line.
type Command struct {
	// Words are the program and its arguments, escapes undone and quotes
	// removed; '$' is not expanded yet (see Expand).
	Words []string
	// Sep is what ended the command: ";", "&", "&!", "!" or "" at the end.
	Sep string
}

// Background reports whether OSv starts the command without waiting for it.
func (c Command) Background() bool { return c.Sep == "&" || c.Sep == "&!" }

// Parse reads s as OSv's loader does. It returns an ErrInvalidArgument error
// where OSv would refuse the line ("Failed to parse command line"), and also
// for what OSv would silently drop: anything after the last command that
// does not parse.
func Parse(s string) (Line, error) {
	var l Line
	rest := s
	for {
		rest = strings.TrimLeft(rest, " \t\n")
		if !strings.HasPrefix(rest, "-") {
			break
		}
		var o string
		o, rest = loaderToken(rest)
		l.Options = append(l.Options, o)
	}
	cmds, err := parseCommands(rest)
	if err != nil {
		return Line{}, fmt.Errorf("OSv command line %q: %w", s, err)
	}
	l.Commands = cmds
	return l, nil
}

// loaderToken cuts the first token of s at a space, tab or newline; a
// backslash makes the next byte part of the token (OSv's stresep).
func loaderToken(s string) (tok, rest string) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch ch := s[i]; ch {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case ' ', '\t', '\n':
			return b.String(), s[i+1:]
		default:
			b.WriteByte(ch)
		}
	}
	return b.String(), ""
}

// isSpace is Boost.Spirit's ascii::space, which skips between words.
func isSpace(ch byte) bool {
	return ch == ' ' || (ch >= '\t' && ch <= '\r')
}

// unescape maps the byte after a backslash to what the escape stands for.
var unescape = map[byte]byte{
	'a': '\a', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t', 'v': '\v',
	'\\': '\\', '\'': '\'', '"': '"',
}

// parseCommands reads OSv's command grammar (core/commands.cc).
func parseCommands(s string) ([]Command, error) {
	if strings.Trim(s, " \f\n\r\t\v;") == "" {
		return nil, nil // OSv: a line of blanks and ';' runs nothing
	}
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return nil, fmt.Errorf("byte %#x at %d: OSv parses ASCII only: %w", s[i], i, errdefs.ErrInvalidArgument)
		}
	}
	var cmds []Command
	i := 0
	skip := func() {
		for i < len(s) && isSpace(s[i]) {
			i++
		}
	}
	for {
		skip()
		if i == len(s) {
			return cmds, nil
		}
		var c Command
		for {
			skip()
			if i == len(s) || strings.IndexByte(";&!", s[i]) >= 0 {
				break
			}
			w, n, err := word(s[i:])
			if err != nil {
				return nil, err
			}
			c.Words = append(c.Words, w)
			i += n
		}
		if len(c.Words) == 0 {
			return nil, fmt.Errorf("a command separator at %d follows no command: %w", i, errdefs.ErrInvalidArgument)
		}
		switch {
		case i == len(s):
		case strings.HasPrefix(s[i:], "&!"):
			c.Sep, i = "&!", i+2
		default:
			c.Sep, i = s[i:i+1], i+1
		}
		cmds = append(cmds, c)
	}
}

// word reads one word at the start of s and returns it and the bytes read.
func word(s string) (string, int, error) {
	var b strings.Builder
	if s[0] == '"' {
		for i := 1; i < len(s); i++ {
			switch ch := s[i]; {
			case ch == '"':
				return b.String(), i + 1, nil
			case ch == '\\' && i+1 < len(s) && unescape[s[i+1]] != 0:
				i++
				b.WriteByte(unescape[s[i]])
			default:
				b.WriteByte(ch)
			}
		}
		// OSv: not a quoted word, so a bare one that starts with '"'.
		b.Reset()
	}
	i := 0
	for ; i < len(s) && strings.IndexByte(" ;&!", s[i]) < 0; i++ {
		if s[i] == '\\' && i+1 < len(s) && unescape[s[i+1]] != 0 {
			i++
			b.WriteByte(unescape[s[i]])
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String(), i, nil
}

// Env returns the values of the line's --env options, K=V, in order.
func (l Line) Env() []string {
	var env []string
	for _, o := range l.Options {
		if kv, ok := strings.CutPrefix(o, "--env="); ok {
			env = append(env, kv)
		}
	}
	return env
}

// Expand returns words with OSv's variable expansion applied: from a word's
// first '$' to its end is a variable's name, replaced by its value from
// lookup ("" when unset).
func Expand(words []string, lookup func(string) (string, bool)) []string {
	out := make([]string, len(words))
	for i, w := range words {
		if j := strings.IndexByte(w, '$'); j >= 0 {
			v, _ := lookup(w[j+1:])
			w = w[:j] + v
		}
		out[i] = w
	}
	return out
}

// EnvLookup returns a lookup over K=V entries for Expand; a later entry of
// the same name wins, as with putenv.
func EnvLookup(env []string) func(string) (string, bool) {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

// Single returns l as one Cmdline — what an image config carries: its
// --env and --cwd options lifted out, its other loader options kept as the
// first Args (Render writes them back as options), and '$' references to
// the line's own variables expanded as OSv would expand them (others stay
// as written: Feather passes every byte of an argument as it is). It
// returns an ErrInvalidArgument error for a line of several commands
// (Feather runs one program per container), no command, or an --env that is
// not KEY=VALUE.
func (l Line) Single() (Cmdline, error) {
	var c Cmdline
	var env []string
	for _, o := range l.Options {
		switch {
		case strings.HasPrefix(o, "--env="):
			kv := strings.TrimPrefix(o, "--env=")
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return Cmdline{}, fmt.Errorf("%s is not --env=KEY=VALUE: %w", o, errdefs.ErrInvalidArgument)
			}
			env = append(env, kv)
		case strings.HasPrefix(o, "--cwd="):
			c.Cwd = strings.TrimPrefix(o, "--cwd=")
		default:
			c.Args = append(c.Args, o)
		}
	}
	switch {
	case len(l.Commands) == 0:
		return Cmdline{}, fmt.Errorf("the command line has no command to run: %w", errdefs.ErrInvalidArgument)
	case len(l.Commands) > 1 || (l.Commands[0].Sep != "" && l.Commands[0].Sep != ";"):
		return Cmdline{}, fmt.Errorf("the command line runs several commands (%q ends the first): Feather runs one program per container: %w",
			l.Commands[0].Sep, errdefs.ErrInvalidArgument)
	}
	own := EnvLookup(env)
	for _, w := range l.Commands[0].Words {
		if j := strings.IndexByte(w, '$'); j >= 0 {
			if v, ok := own(w[j+1:]); ok {
				w = w[:j] + v
			}
		}
		c.Args = append(c.Args, w)
	}
	c.Env = env
	return c, nil
}
