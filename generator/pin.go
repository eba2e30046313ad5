package generator

import (
	"context"
	"fmt"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/conduitmesh/conduit/pkg/ocilayout"
)

// PinFromLayout pins ref to the image index in the OCI layout at dir (as
// written by `make image`): the result is repo:tag@sha256:..., with the tag
// from the layout's ref name when it has one, else ref's own tag.
func PinFromLayout(ref, dir string) (string, error) {
	digest, refName, err := ocilayout.IndexDigest(dir)
	if err != nil {
		return "", err
	}
	tag := tagOf(ref)
	if refName != "" {
		tag = refName
	}
	out := repoOf(ref)
	if tag != "" {
		out += ":" + tag
	}
	return out + "@" + digest.String(), nil
}

// Resolve pins a tagged reference through its registry (remote.Head): the
// result is repo:tag@sha256:.... A reference that already has a digest is
// returned unchanged.
func Resolve(ctx context.Context, ref string, opts ...remote.Option) (string, error) {
	if strings.Contains(ref, "@") {
		return ref, nil
	}
	tag, err := name.NewTag(ref, name.StrictValidation)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", ref, err)
	}
	desc, err := remote.Head(tag, append([]remote.Option{remote.WithContext(ctx)}, opts...)...)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", ref, err)
	}
	return ref + "@" + desc.Digest.String(), nil
}

// tagOf returns the tag of repo[:tag][@digest], or "".
func tagOf(ref string) string {
	ref, _, _ = strings.Cut(ref, "@")
	slash := strings.LastIndex(ref, "/")
	if colon := strings.LastIndex(ref, ":"); colon > slash {
		return ref[colon+1:]
	}
	return ""
}
