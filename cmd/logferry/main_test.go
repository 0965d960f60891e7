package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

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
