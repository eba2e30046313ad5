package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/conduitmesh/conduit/image"
)

func TestRunPacksHostProgram(t *testing.T) {
	if _, err := os.Stat("/usr/bin/printf"); err != nil {
		t.Fatal("/usr/bin/printf (coreutils) is required: ", err)
	}
	dir := t.TempDir()
	o := options{
		program: "/usr/bin/printf",
		dirs:    []string{"/data:65534"},
		user:    "65534",
		tag:     "ghcr.io/conduitmesh/printf:test",
		layout:  filepath.Join(dir, "layout"),
		archive: filepath.Join(dir, "printf.tar"),
	}
	var stdout, stderr bytes.Buffer
	if err := Run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatalf("%v\n%s", err, stderr.String())
	}
	digest, err := image.LayoutIndexDigest(o.layout)
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(stdout.String()) != digest.String() {
		t.Errorf("printed %q, layout holds %s", stdout.String(), digest)
	}
	tag, _ := name.NewTag(o.tag)
	img, err := tarball.ImageFromPath(o.archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	if cf.Config.User != "65534" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/usr/bin/printf" {
		t.Errorf("config %+v", cf.Config)
	}
	// Timestamps default to the program's mtime, so a rebuild is identical.
	st, _ := os.Stat(o.program)
	if !cf.Created.Time.Equal(st.ModTime().UTC().Truncate(1e9)) {
		t.Errorf("created %v, program mtime %v", cf.Created, st.ModTime())
	}
	stdout.Reset()
	o.layout = filepath.Join(dir, "again")
	if err := Run(context.Background(), o, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(stdout.String()) != digest.String() {
		t.Errorf("second build %q, first %s", stdout.String(), digest)
	}
}

func TestValidate(t *testing.T) {
	good := options{program: "/usr/bin/printf", tag: "example.com/b:c", layout: "x"}
	for _, tc := range []struct {
		edit func(*options)
		want string
	}{
		{func(o *options) { o.program = "" }, "--program"},
		{func(o *options) { o.program = "printf" }, `--program "printf"`},
		{func(o *options) { o.tag = "" }, `--tag ""`},
		{func(o *options) { o.dirs = []string{"/d:x"} }, `--dir "/d:x": uid "x"`},
		{func(o *options) { o.dirs = []string{"d"} }, `--dir "d"`},
		{func(o *options) { o.layout = "" }, "nothing to do"},
		{func(o *options) { o.epoch = "soon" }, "--source-date-epoch"},
	} {
		o := good
		tc.edit(&o)
		if err := o.validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want %q", err, tc.want)
		}
	}
	if err := good.validate(); err != nil {
		t.Errorf("good options: %v", err)
	}
}
