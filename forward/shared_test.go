package forward

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSharedOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    map[string]string
		want    SharedOptions
		wantErr string // the key the error names; empty: none
	}{
		{name: "none", opts: nil},
		{name: "others ignored", opts: map[string]string{"max-size": "1m", "fluentd-address": "x"}},
		{name: "json", opts: map[string]string{KeyLogFormat: "json"}, want: SharedOptions{JSONFields: true}},
		{name: "text", opts: map[string]string{KeyLogFormat: "text"}},
		{name: "merge", opts: map[string]string{KeyPartialMerge: "true", KeyPartialMergeTimeout: "2s"},
			want: SharedOptions{PartialMerge: true, Merge: MergeConfig{Timeout: 2 * time.Second}}},
		{name: "buffer", opts: map[string]string{KeyBufferMaxSize: "2m", KeyBufferFull: "drop-newest"},
			want: SharedOptions{Buffer: BufferConfig{MaxSize: 2_000_000, Full: DropNewest}}},
		{name: "bad log format", opts: map[string]string{KeyLogFormat: "xml"}, wantErr: KeyLogFormat},
		{name: "bad merge", opts: map[string]string{KeyPartialMerge: "on"}, wantErr: KeyPartialMerge},
		{name: "bad merge timeout", opts: map[string]string{KeyPartialMergeTimeout: "0s"}, wantErr: KeyPartialMergeTimeout},
		{name: "bad buffer size", opts: map[string]string{KeyBufferMaxSize: "tiny"}, wantErr: KeyBufferMaxSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseSharedOptions(tt.opts)
			if tt.wantErr != "" {
				if !errors.Is(err, ErrInvalidOption) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one about %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}
