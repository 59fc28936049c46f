// The packaging program builds Outpost's Debian packages with nfpm, from the
// static binaries the Makefile cross-builds into bin/linux_<arch>/:
//
//	cd packaging && go run . -root .. -out ../dist -version "$(./version.sh)"
//
// It lives in its own module so that nfpm's hundred dependencies stay out of
// the daemon's go.mod. Builds are reproducible: every timestamp (files,
// archive members, the changelog's date) is the commit time, taken from
// SOURCE_DATE_EPOCH when set and from git otherwise, and the gzip members
// carry no name or time, so two builds of one commit are byte-identical.
package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

const (
	maintainer = "Outpost developers <outpost-iot@users.noreply.github.com>"
	homepage   = "https://github.com/outpost-iot/outpost"
	release    = "1" // the Debian revision of every package
)

// arch is one target: the Debian architecture, nfpm's name for it, and the
// directory under bin/ that holds its binaries.
type arch struct {
	deb, nfpm, bindir string
}

var (
	amd64 = arch{"amd64", "amd64", "linux_amd64"}
	arm64 = arch{"arm64", "arm64", "linux_arm64"}
	// nfpm's "arm" would give Architecture: arm, which Debian does not know;
	// "arm6" is armhf, and the binary is built GOARM=6 so it runs on every Pi.
	armhf = arch{"armhf", "arm6", "linux_armv6"}
)

// file is one file a package ships. src is relative to the repository root,
// or to the generated-files directory when gen is set.
type file struct {
	src, dst string
	mode     os.FileMode
	conffile bool
	gen      bool
}

// pkg is one binary package. Its maintainer scripts, copyright, man page and
// lintian overrides live in packaging/<name>/.
type pkg struct {
	name        string
	arches      []arch
	section     string
	summary     string
	description string
	depends     []string
	recommends  []string
	files       []file
	manpage     string // file name under packaging/<name>/, e.g. outpost.8
}

// packages is the table to extend with a new package.
var packages = []pkg{
	{
		name:    "outpost",
		arches:  []arch{amd64, arm64, armhf},
		section: "net",
		summary: "store-and-forward telemetry daemon for field devices",
		description: "Outpost reads sensors on small Linux boards (I2C, 1-Wire, GPIO),\n" +
			"keeps every reading safe on local flash while the network is down,\n" +
			"and delivers each one exactly once in effect to an Outpost receiver\n" +
			"over HTTP or MQTT when connectivity comes back.\n" +
			"\n" +
			"This package ships the outpost daemon and command line and its\n" +
			"systemd unit; the service runs as the outpost system user.",
		// adduser for the maintainer scripts; procps for the unit's
		// ExecReload=/bin/kill (not Essential, and missing from minimal roots).
		depends: []string{"adduser", "procps"},
		files: []file{
			{src: "bin/{bindir}/outpost", dst: "/usr/bin/outpost", mode: 0o755},
			{src: "systemd/outpost.service", dst: "/usr/lib/systemd/system/outpost.service", mode: 0o644},
			{src: "packaging/outpost/outpost.yaml", dst: "/etc/outpost/outpost.yaml", mode: 0o640, conffile: true},
			{src: "packaging/outpost/copyright", dst: "/usr/share/doc/outpost/copyright", mode: 0o644},
			{src: "packaging/outpost/lintian-overrides", dst: "/usr/share/lintian/overrides/outpost", mode: 0o644},
		},
		manpage: "outpost.8",
	},
	{
		name:    "outpost-receiver",
		arches:  []arch{amd64, arm64},
		section: "net",
		summary: "receiver that stores Outpost devices' readings",
		description: "The cloud side of Outpost: accepts batches of readings from Outpost\n" +
			"devices over HTTP and MQTT and stores each reading exactly once in\n" +
			"PostgreSQL or SQLite, with per-device accounting of gaps and drops\n" +
			"and a query API.\n" +
			"\n" +
			"This package ships the outpost-receiver command and its systemd unit;\n" +
			"the service runs as the outpost-receiver system user and keeps its\n" +
			"SQLite database in /var/lib/outpost-receiver unless told otherwise.",
		depends: []string{"adduser"},
		files: []file{
			{src: "bin/{bindir}/outpost-receiver", dst: "/usr/bin/outpost-receiver", mode: 0o755},
			{src: "systemd/outpost-receiver.service", dst: "/usr/lib/systemd/system/outpost-receiver.service", mode: 0o644},
			{src: "packaging/outpost-receiver/default", dst: "/etc/default/outpost-receiver", mode: 0o640, conffile: true},
			{src: "packaging/outpost-receiver/copyright", dst: "/usr/share/doc/outpost-receiver/copyright", mode: 0o644},
			{src: "packaging/outpost-receiver/lintian-overrides", dst: "/usr/share/lintian/overrides/outpost-receiver", mode: 0o644},
		},
		manpage: "outpost-receiver.8",
	},
}

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "packaging:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("packaging", flag.ContinueOnError)
	root := fs.String("root", "..", "the repository `dir`")
	out := fs.String("out", "../dist", "write the .deb files into `dir`")
	version := fs.String("version", "", "the upstream `version` (packaging/version.sh)")
	only := fs.String("arch", "", "build only for these Debian `arches` (comma-separated)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if !validVersion(*version) {
		return fmt.Errorf("-version %q: want a Debian upstream version starting with a digit", *version)
	}
	mtime, err := sourceDate(*root)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	want := map[string]bool{}
	for _, a := range strings.Split(*only, ",") {
		if a != "" {
			want[a] = true
		}
	}
	for _, p := range packages {
		for _, a := range p.arches {
			if len(want) > 0 && !want[a.deb] {
				continue
			}
			path, err := build(p, a, *root, *out, *version, mtime)
			if err != nil {
				return fmt.Errorf("%s %s: %w", p.name, a.deb, err)
			}
			fmt.Fprintln(stdout, path)
		}
	}
	return nil
}

var versionRE = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~]*$`)

func validVersion(v string) bool { return versionRE.MatchString(v) }

// sourceDate is the time stamped into the packages: SOURCE_DATE_EPOCH
// (reproducible-builds.org) or the time of the commit being built.
func sourceDate(root string) (time.Time, error) {
	s := os.Getenv("SOURCE_DATE_EPOCH")
	if s == "" {
		b, err := exec.Command("git", "-C", root, "log", "-1", "--format=%ct").Output()
		if err != nil {
			return time.Time{}, fmt.Errorf("no SOURCE_DATE_EPOCH and no git commit time: %w", err)
		}
		s = strings.TrimSpace(string(b))
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", s, err)
	}
	return time.Unix(n, 0).UTC(), nil
}

func build(p pkg, a arch, root, out, version string, mtime time.Time) (string, error) {
	gen, err := os.MkdirTemp("", "outpost-packaging-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(gen)

	fls := p.files
	docdir := "/usr/share/doc/" + p.name
	changelog := changelogText(p.name, version+"-"+release, mtime)
	if err := writeGzip(filepath.Join(gen, "changelog.Debian.gz"), []byte(changelog)); err != nil {
		return "", err
	}
	fls = append(fls, file{src: "changelog.Debian.gz", dst: docdir + "/changelog.Debian.gz", mode: 0o644, gen: true})
	if p.manpage != "" {
		page, err := os.ReadFile(filepath.Join(root, "packaging", p.name, p.manpage))
		if err != nil {
			return "", err
		}
		page = bytes.ReplaceAll(page, []byte("@VERSION@"), []byte(version))
		page = bytes.ReplaceAll(page, []byte("@DATE@"), []byte(mtime.Format("2006-01-02")))
		section := p.manpage[strings.LastIndexByte(p.manpage, '.')+1:]
		if err := writeGzip(filepath.Join(gen, p.manpage+".gz"), page); err != nil {
			return "", err
		}
		fls = append(fls, file{src: p.manpage + ".gz", dst: "/usr/share/man/man" + section + "/" + p.manpage + ".gz", mode: 0o644, gen: true})
	}

	var contents files.Contents
	for _, f := range fls {
		src := filepath.Join(root, strings.ReplaceAll(f.src, "{bindir}", a.bindir))
		if f.gen {
			src = filepath.Join(gen, f.src)
		}
		if _, err := os.Stat(src); err != nil {
			if errors.Is(err, os.ErrNotExist) && strings.HasPrefix(f.src, "bin/") {
				return "", fmt.Errorf("%s is missing: run make deb (it cross-builds the binaries first)", src)
			}
			return "", err
		}
		typ := files.TypeFile
		if f.conffile {
			typ = files.TypeConfigNoReplace
		}
		contents = append(contents, &files.Content{
			Source:      src,
			Destination: f.dst,
			Type:        typ,
			FileInfo:    &files.ContentFileInfo{Owner: "root", Group: "root", Mode: f.mode, MTime: mtime},
		})
	}

	scripts := nfpm.Scripts{}
	for _, s := range []struct {
		name string
		to   *string
	}{{"preinst", &scripts.PreInstall}, {"postinst", &scripts.PostInstall}, {"prerm", &scripts.PreRemove}, {"postrm", &scripts.PostRemove}} {
		path := filepath.Join(root, "packaging", p.name, s.name)
		if _, err := os.Stat(path); err == nil {
			*s.to = path
		}
	}

	info := &nfpm.Info{
		Name:          p.name,
		Arch:          a.nfpm,
		Platform:      "linux",
		Version:       version,
		VersionSchema: "none", // version.sh already gives a Debian version; keep it verbatim
		Release:       release,
		Section:       p.section,
		Priority:      "optional",
		Maintainer:    maintainer,
		Homepage:      homepage,
		License:       "Apache-2.0",
		Description:   p.summary + "\n" + p.description,
		MTime:         mtime,
		Overridables: nfpm.Overridables{
			Depends:    p.depends,
			Recommends: p.recommends,
			Contents:   contents,
			Scripts:    scripts,
			Umask:      0o022,
		},
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, "deb"); err != nil {
		return "", err
	}
	name := filepath.Join(out, deb.Default.ConventionalFileName(info))
	var buf bytes.Buffer
	if err := deb.Default.Package(info, &buf); err != nil {
		return "", err
	}
	if err := os.WriteFile(name, buf.Bytes(), 0o644); err != nil {
		return "", err
	}
	return name, nil
}

// changelogText is a Debian changelog with one entry for this build. The
// project's history is its git log; the package records which build it is.
func changelogText(name, version string, date time.Time) string {
	return fmt.Sprintf("%s (%s) unstable; urgency=medium\n\n"+
		"  * Package built from the Outpost source tree; the changes are in its\n"+
		"    git history (%s).\n\n"+
		" -- %s  %s\n",
		name, version, homepage, maintainer, date.Format("Mon, 02 Jan 2006 15:04:05 -0700"))
}

// writeGzip writes data as gzip -9n does: best compression, and no file
// name or time in the header.
func writeGzip(path string, data []byte) error {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := zw.Write(data); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}
