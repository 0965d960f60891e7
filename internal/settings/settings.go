// Package settings reads the plugin's settings (`docker plugin set`) that
// hold secrets: each from its variable, or from the file its _FILE
// variable names, so that the secret itself stays out of `docker plugin
// inspect`. Destinations read theirs when a container starts, so that a
// rotated file is read again.
package settings

import (
	"fmt"
	"os"
	"strings"
)

// Secret returns the value of the setting name: the variable itself, or
// the content of the file that name_FILE names, without its final line
// break. Setting both is an error.
func Secret(name string) (string, error) {
	val, file := os.Getenv(name), os.Getenv(name+"_FILE")
	if file == "" {
		return val, nil
	}
	if val != "" {
		return "", fmt.Errorf("setting %s: set %s or %s_FILE, not both", name, name, name)
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("setting %s_FILE: %w", name, err)
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

// Field is a setting to read with Read, and where its value goes.
type Field struct {
	Name string
	Dst  *string
}

// Read reads every field's setting with Secret into its Dst, and returns
// the first error.
func Read(fields ...Field) error {
	for _, f := range fields {
		val, err := Secret(f.Name)
		if err != nil {
			return err
		}
		*f.Dst = val
	}
	return nil
}
