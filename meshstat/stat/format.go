package stat

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Write prints rows as a table (wide adds the TCP byte rates) or as a JSON
// array. allNamespaces adds a NAMESPACE column.
func Write(w io.Writer, rows []Row, output string, allNamespaces bool) error {
	if output == OutputJSON {
		if rows == nil {
			rows = []Row{}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	wide := output == OutputWide
	header := []string{"NAME", "MESHED", "SUCCESS", "RPS", "LATENCY_P50", "LATENCY_P95", "LATENCY_P99", "TCP_CONN"}
	if wide {
		header = append(header, "READ_BYTES/SEC", "WRITE_BYTES/SEC")
	}
	left := 1 // left-aligned leading columns
	if allNamespaces {
		header = append([]string{"NAMESPACE"}, header...)
		left = 2
	}
	table := [][]string{header}
	for _, r := range rows {
		line := []string{
			r.Name,
			fmt.Sprintf("%d/%d", r.MeshedPods, r.RunningPods),
			orDash(r.SuccessRate, func(v float64) string { return strconv.FormatFloat(v*100, 'f', 2, 64) + "%" }),
			orDash(r.RPS, func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) + "rps" }),
			orDash(r.LatencyMsP50, FormatMs),
			orDash(r.LatencyMsP95, FormatMs),
			orDash(r.LatencyMsP99, FormatMs),
			orDash(r.TCPConnections, func(v float64) string { return strconv.FormatFloat(math.Round(v), 'f', 0, 64) }),
		}
		if wide {
			line = append(line, orDash(r.ReadBytesPerSec, FormatByteRate), orDash(r.WriteBytesPerSec, FormatByteRate))
		}
		if allNamespaces {
			line = append([]string{r.Namespace}, line...)
		}
		table = append(table, line)
	}
	return writeAligned(w, table, left)
}

// writeAligned pads columns three spaces apart: the first left columns
// aligned left, the figures right.
func writeAligned(w io.Writer, table [][]string, left int) error {
	width := make([]int, len(table[0]))
	for _, line := range table {
		for i, c := range line {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	var b strings.Builder
	for _, line := range table {
		for i, c := range line {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i > 0 {
				b.WriteString("   ")
			}
			if i < left {
				b.WriteString(c)
				if i < len(line)-1 {
					b.WriteString(pad)
				}
			} else {
				b.WriteString(pad + c)
			}
		}
		b.WriteByte('\n')
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func orDash(v *float64, f func(float64) string) string {
	if v == nil {
		return "-"
	}
	return f(*v)
}

// FormatMs prints a latency in milliseconds: whole milliseconds from 10 ms
// up, one decimal below (0.5ms, 1ms, 2.5ms, 35ms).
func FormatMs(ms float64) string {
	if ms >= 10 {
		return strconv.FormatFloat(math.Round(ms), 'f', 0, 64) + "ms"
	}
	return strconv.FormatFloat(math.Round(ms*10)/10, 'f', -1, 64) + "ms"
}

// FormatByteRate prints bytes per second with a binary unit: 512B/s,
// 1.5KiB/s, 20.0MiB/s.
func FormatByteRate(v float64) string {
	units := []string{"B/s", "KiB/s", "MiB/s", "GiB/s", "TiB/s"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return strconv.FormatFloat(math.Round(v), 'f', 0, 64) + units[0]
	}
	return strconv.FormatFloat(v, 'f', 1, 64) + units[i]
}
