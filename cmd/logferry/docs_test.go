package main

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/logferry/logferry/driver"
	"github.com/logferry/logferry/forward/elasticsearch"
)

// optionName is a --log-opt key as the documentation's tables spell it.
var optionName = regexp.MustCompile("`([a-z][a-z0-9]*(?:-[a-z0-9]+)+|tag|labels|env|compress|mode)`")

// documentedOptions returns the option keys named in the first column of
// the Markdown tables of the file at path.
func documentedOptions(t *testing.T, path string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	names := make(map[string]bool)
	for _, line := range strings.Split(string(b), "\n") {
		cells := strings.Split(line, "|")
		if !strings.HasPrefix(line, "|") || len(cells) < 3 {
			continue
		}
		for _, m := range optionName.FindAllStringSubmatch(cells[1], -1) {
			names[m[1]] = true
		}
	}
	return names
}

// TestDocsNameEveryOption checks the option tables against the options the
// plugin accepts: the README's tables name every option and no other, and
// each destination's reference page, docs/<name>.md, names every option of
// that destination and no other of its prefix.
func TestDocsNameEveryOption(t *testing.T) {
	dests := destinations(elasticsearch.Credentials{})
	accepted := driver.OptionKeys(dests)
	repo := filepath.Join("..", "..")

	readme := documentedOptions(t, filepath.Join(repo, "README.md"))
	for _, k := range accepted {
		if !readme[k] {
			t.Errorf("README.md: no table names option %s", k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(readme)) {
		if !slices.Contains(accepted, k) {
			t.Errorf("README.md: a table names %s, which the plugin does not accept", k)
		}
	}

	for _, d := range dests {
		t.Run(d.Name, func(t *testing.T) {
			page := filepath.Join(repo, "docs", d.Name+".md")
			documented := documentedOptions(t, page)
			for _, k := range d.Keys {
				if !documented[k] {
					t.Errorf("%s: no table names option %s", page, k)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(documented)) {
				if strings.HasPrefix(k, d.Name+"-") && !slices.Contains(d.Keys, k) {
					t.Errorf("%s: a table names %s, which is not an option of %s", page, k, d.Name)
				}
			}
		})
	}
}

// TestDocsNameEverySetting checks the README's table of settings against
// the plugin's config.json: every environment variable (a credential's
// _FILE variant through the <credential>_FILE row) and every mount's
// source is named, and nothing else.
func TestDocsNameEverySetting(t *testing.T) {
	repo := filepath.Join("..", "..")
	b, err := os.ReadFile(filepath.Join(repo, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var config struct {
		Env []struct {
			Name     string
			Settable []string
		}
		Mounts []struct {
			Name     string
			Settable []string
		}
	}
	if err := json.Unmarshal(b, &config); err != nil {
		t.Fatal(err)
	}
	want := make(map[string]bool)
	for _, e := range config.Env {
		if !strings.HasSuffix(e.Name, "_FILE") || e.Name == "AWS_WEB_IDENTITY_TOKEN_FILE" {
			want[e.Name] = true
		}
	}
	for _, m := range config.Mounts {
		if slices.Contains(m.Settable, "source") {
			want[m.Name+".source"] = true
		}
	}

	b, err = os.ReadFile(filepath.Join(repo, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "| Setting | Default | Meaning |")
	if start < 0 {
		t.Fatal("README.md has no table of settings")
	}
	table, _, _ := strings.Cut(readme[start:], "\n\n")
	named := make(map[string]bool)
	for _, line := range strings.Split(table, "\n")[2:] {
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range settingName.FindAllStringSubmatch(cells[1], -1) {
			named[m[1]] = true
		}
	}
	delete(named, "<credential>_FILE")
	if !maps.Equal(named, want) {
		t.Errorf("README.md's settings name %v, config.json has %v", slices.Sorted(maps.Keys(named)), slices.Sorted(maps.Keys(want)))
	}
}

// settingName is a setting as the README's table spells it.
var settingName = regexp.MustCompile("`([^`]+)`")

// TestDocsLinks checks that every relative link of the documentation leads
// to a file of the repository.
func TestDocsLinks(t *testing.T) {
	repo := filepath.Join("..", "..")
	pages, err := filepath.Glob(filepath.Join(repo, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"README.md", "CONTRIBUTING.md", "CHANGELOG.md"} {
		pages = append(pages, filepath.Join(repo, name))
	}
	for _, page := range pages {
		b, err := os.ReadFile(page)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range markdownLink.FindAllStringSubmatch(string(b), -1) {
			target, _, _ := strings.Cut(m[1], "#")
			if target == "" || strings.Contains(target, "://") {
				continue
			}
			if _, err := os.Stat(filepath.Join(filepath.Dir(page), target)); err != nil {
				t.Errorf("%s links to %s: %v", page, m[1], err)
			}
		}
	}
}

// markdownLink is the target of a Markdown link.
var markdownLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)
