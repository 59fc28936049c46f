package strictyaml

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Parse reads data, the text of file, as one YAML document and returns
// its top node, or nil when the file holds no document (empty, or only
// comments). A syntax error is returned as Problems naming the line where
// the mistake is, and a tab where one is the cause.
func Parse(file string, data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, Problems{syntaxProblem(file, data, err)}
	}
	var extra yaml.Node
	switch err := dec.Decode(&extra); {
	case errors.Is(err, io.EOF):
		return Resolve(&doc), nil
	case err != nil:
		return nil, Problems{syntaxProblem(file, data, err)}
	default:
		return nil, Problems{{File: file, Line: extra.Line, Msg: "a second YAML document starts here; the configuration is one document"}}
	}
}

// yamlLine is how the yaml package says where: "yaml: line 3: ".
var yamlLine = regexp.MustCompile(`^yaml: (?:line (\d+): )?`)

// syntaxProblem turns the yaml package's syntax error into a Problem at
// the line of the mistake. The yaml package names the line where the
// construct around the mistake began (and, for some errors, counts from
// 0): bad indentation on line 4 under a key on line 3 comes out as
// "line 3". The mistake is on the first line whose prefix of the file
// already fails with the same error, no earlier than the line named.
func syntaxProblem(file string, data []byte, err error) Problem {
	msg, line := err.Error(), 0
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		msg = msg[len(m[0]):]
		line, _ = strconv.Atoi(m[1])
	}
	ends := lineEnds(data)
	line = mistakeLine(data, ends, msg, max(line, 1))
	if line > 0 && line <= len(ends) && indentedWithTab(data, ends, line) {
		if strings.Contains(msg, "tab") {
			msg += " (YAML indents with spaces only)"
		} else {
			msg += " (a tab: YAML indents with spaces only)"
		}
	}
	return Problem{File: file, Line: line, Msg: msg}
}

// mistakeLine returns the first line, from line from on, whose prefix of
// data fails to parse with msg. Prefixes that end before the mistake parse,
// or fail otherwise (at their end); those past it fail as the whole file
// does. It gallops, then bisects: a handful of parses, not one a line.
func mistakeLine(data []byte, ends []int, msg string, from int) int {
	fails := func(k int) bool {
		err := parseAll(data[:ends[k-1]])
		return err != nil && yamlLine.ReplaceAllString(err.Error(), "") == msg
	}
	lo, hi := from, len(ends) // the whole file, line hi, fails with msg
	if lo > hi {
		return from
	}
	for k, step := lo, 1; k < hi; k, step = k+step, step*2 {
		if fails(k) {
			hi = k
			break
		}
		lo = k + 1
	}
	for lo < hi {
		if mid := (lo + hi) / 2; fails(mid) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return hi
}

// lineEnds returns, for each line of data, the offset just past it. Lines
// end as the yaml package ends them: at LF, CR LF, CR, NEL, LS or PS.
func lineEnds(data []byte) []int {
	var ends []int
	for i := 0; i < len(data); i++ {
		switch {
		case data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n':
			i++
		case data[i] == '\n' || data[i] == '\r':
		case bytes.HasPrefix(data[i:], []byte("\u0085")):
			i++
		case bytes.HasPrefix(data[i:], []byte("\u2028")) || bytes.HasPrefix(data[i:], []byte("\u2029")):
			i += 2
		default:
			continue
		}
		ends = append(ends, i+1)
	}
	if len(ends) == 0 || ends[len(ends)-1] < len(data) {
		ends = append(ends, len(data))
	}
	return ends
}

// indentedWithTab says whether a tab is in the indentation of line.
func indentedWithTab(data []byte, ends []int, line int) bool {
	start := 0
	if line > 1 {
		start = ends[line-2]
	}
	text := data[start:ends[line-1]]
	indent := text[:len(text)-len(bytes.TrimLeft(text, " \t"))]
	return bytes.IndexByte(indent, '\t') >= 0
}

// parseAll parses every document of data, for the first syntax error.
func parseAll(data []byte) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var n yaml.Node
		if err := dec.Decode(&n); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
