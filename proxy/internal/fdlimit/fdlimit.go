// Package fdlimit keeps the proxy answering its admin port when
// connections use up the file descriptor limit: it raises the soft limit
// to the hard one at start, and a Budget turns new connections away at
// accept while a reserve of descriptors is still free (for /live, /ready
// and /metrics, upstream connections of accepted clients, and the count
// itself).
package fdlimit

import (
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raise sets the soft RLIMIT_NOFILE to the hard limit and returns the soft
// limit in force afterwards. (Go's runtime does the same at start on
// Linux; doing it here makes the limit the proxy works with explicit.)
func Raise() (int, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err == nil {
			rl = want
		}
	}
	const maxInt = int(^uint(0) >> 1)
	if rl.Cur > uint64(maxInt) {
		return maxInt, nil
	}
	return int(rl.Cur), nil
}

// Reserve is how many descriptors a Budget keeps free for a limit: 1/16
// of it, at least 32 and at most 1024, never more than half the limit.
func Reserve(limit int) int {
	return min(max(limit/16, 32), 1024, limit/2)
}

// PerConn is how many descriptors an admitted connection is assumed to
// take: itself and its upstream connection.
const PerConn = 2

// Budget decides at accept whether a new connection fits. It counts the
// process's open descriptors (/proc/self/fd) now and then, and in between
// adds PerConn for every connection it admits, ignoring closes, so its
// estimate only errs high. It counts again after a second, or, while the
// estimate is within a quarter of the budget, as often as a count's own
// cost allows (at most a tenth of the time spent counting, and at most
// every 10 ms).
type Budget struct {
	limit, reserve int
	count          func() (int, error)
	now            func() time.Time

	mu       sync.Mutex
	counted  int           // descriptors open at the last count
	admitted int           // connections admitted since
	at       time.Time     // of the last count
	cost     time.Duration // how long the last count took
}

// NewBudget returns a Budget for the given limit with Reserve(limit) kept
// free.
func NewBudget(limit int) *Budget {
	return &Budget{limit: limit, reserve: Reserve(limit), count: Count, now: time.Now}
}

// Limit is the descriptor limit and Reserved the descriptors kept free.
func (b *Budget) Limit() int    { return b.limit }
func (b *Budget) Reserved() int { return b.reserve }

// Admit reports whether a connection just accepted may be served; when it
// returns false the caller closes it.
func (b *Budget) Admit() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	budget := b.limit - b.reserve
	now := b.now()
	since := now.Sub(b.at)
	est := b.counted + PerConn*(b.admitted+1)
	interval := time.Second
	if est > budget-budget/4 {
		interval = max(10*time.Millisecond, 10*b.cost)
	}
	if b.at.IsZero() || since >= interval {
		n, err := b.count()
		b.cost = b.now().Sub(now)
		b.at, b.admitted = now, 0
		if err != nil {
			// Not even a descriptor to count with: full.
			b.counted = b.limit
			return false
		}
		b.counted = n
		est = n + PerConn
	}
	if est > budget {
		return false
	}
	b.admitted++
	return true
}

// Count returns how many descriptors the process has open, without the
// one it uses to count: the entries of /proc/self/fd, read with getdents
// into a buffer on the stack (no allocation per entry).
func Count() (int, error) {
	fd, err := unix.Open("/proc/self/fd", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var buf [16 << 10]byte
	n := 0
	for {
		got, err := unix.Getdents(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if got <= 0 {
			break
		}
		for off := 0; off < got; {
			// struct linux_dirent64: d_ino u64, d_off s64, d_reclen u16, ...
			reclen := int(*(*uint16)(unsafe.Pointer(&buf[off+16])))
			if reclen == 0 {
				break
			}
			n++
			off += reclen
		}
	}
	// Less ".", ".." and the directory itself.
	return max(n-3, 0), nil
}
