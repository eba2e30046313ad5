package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
)

// Result is the part of fortio's JSON report the table uses.
type Result struct {
	RunType        string
	ActualQPS      float64
	ActualDuration time.Duration
	// Calls counts every call, successful or not.
	Calls int64
	// OK counts calls that succeeded: HTTP 2xx, or gRPC SERVING/OK.
	OK int64
	// Percentiles of the call latency, by percentile (50, 99, 99.9).
	Percentiles map[float64]time.Duration
}

// fortioReport mirrors fortio's RunnerResults JSON, for the fields read.
type fortioReport struct {
	RunType           string
	ActualQPS         float64
	ActualDuration    int64 // nanoseconds
	DurationHistogram struct {
		Count       int64
		Percentiles []struct {
			Percentile float64
			Value      float64 // seconds
		}
	}
	// HTTP runs key by status code, gRPC runs by serving status.
	RetCodes map[string]int64
}

// ParseResult reads a fortio -json report.
func ParseResult(r io.Reader) (Result, error) {
	var rep fortioReport
	if err := json.NewDecoder(r).Decode(&rep); err != nil {
		return Result{}, fmt.Errorf("fortio report: %w", err)
	}
	if rep.DurationHistogram.Count == 0 {
		return Result{}, fmt.Errorf("fortio report of a %q run has no calls", rep.RunType)
	}
	res := Result{
		RunType:        rep.RunType,
		ActualQPS:      rep.ActualQPS,
		ActualDuration: time.Duration(rep.ActualDuration),
		Calls:          rep.DurationHistogram.Count,
		Percentiles:    map[float64]time.Duration{},
	}
	for code, n := range rep.RetCodes {
		if okCode(code) {
			res.OK += n
		}
	}
	for _, p := range rep.DurationHistogram.Percentiles {
		res.Percentiles[p.Percentile] = time.Duration(p.Value * float64(time.Second))
	}
	return res, nil
}

func okCode(code string) bool {
	if n, err := strconv.Atoi(code); err == nil {
		return n >= 200 && n < 300
	}
	return strings.EqualFold(code, "SERVING") || strings.EqualFold(code, "OK")
}
