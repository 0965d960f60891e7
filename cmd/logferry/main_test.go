package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestSecret(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "secret")
	if err := os.WriteFile(file, []byte("s3cr=t\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		val, path string
		want      string
		wantErr   string
	}{
		{name: "neither", want: ""},
		{name: "variable", val: "plain", want: "plain"},
		{name: "file, final line break dropped", path: file, want: "s3cr=t"},
		{name: "both", val: "plain", path: file, wantErr: "not both"},
		{name: "missing file", path: filepath.Join(dir, "nope"), wantErr: "TEST_SECRET_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TEST_SECRET", tt.val)
			t.Setenv("TEST_SECRET_FILE", tt.path)
			got, err := secret("TEST_SECRET")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("secret: %q, %v; want an error about %s", got, err, tt.wantErr)
				}
				if strings.Contains(err.Error(), "s3cr=t") || strings.Contains(err.Error(), "plain") {
					t.Fatalf("error reveals the secret: %v", err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("secret: %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestProcs(t *testing.T) {
	tests := []struct {
		setting string
		cpus    int
		want    int
		wantErr bool
	}{
		{setting: "", cpus: 1, want: 1},
		{setting: "", cpus: 2, want: 1},
		{setting: "", cpus: 7, want: 1},
		{setting: "", cpus: 8, want: 2},
		{setting: "", cpus: 64, want: 16},
		{setting: "3", cpus: 2, want: 3},
		{setting: "0", cpus: 8, wantErr: true},
		{setting: "-1", cpus: 8, wantErr: true},
		{setting: "two", cpus: 8, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q of %d", tt.setting, tt.cpus), func(t *testing.T) {
			got, err := procs(tt.setting, tt.cpus)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "GOMAXPROCS") || !strings.Contains(err.Error(), strconv.Quote(tt.setting)) {
					t.Fatalf("procs = %d, %v; want an error naming GOMAXPROCS and %q", got, err, tt.setting)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("procs = %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}
