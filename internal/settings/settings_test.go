package settings

import (
	"os"
	"path/filepath"
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
			got, err := Secret("TEST_SECRET")
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

func TestRead(t *testing.T) {
	file := filepath.Join(t.TempDir(), "b")
	if err := os.WriteFile(file, []byte("from file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEST_A", "plain")
	t.Setenv("TEST_B_FILE", file)
	var a, b, c string
	if err := Read(Field{"TEST_A", &a}, Field{"TEST_B", &b}, Field{"TEST_C", &c}); err != nil {
		t.Fatal(err)
	}
	if a != "plain" || b != "from file" || c != "" {
		t.Errorf("read %q %q %q", a, b, c)
	}
	t.Setenv("TEST_C", "x")
	t.Setenv("TEST_C_FILE", file)
	if err := Read(Field{"TEST_A", &a}, Field{"TEST_C", &c}); err == nil || !strings.Contains(err.Error(), "TEST_C") {
		t.Errorf("both TEST_C and TEST_C_FILE: %v", err)
	}
}
