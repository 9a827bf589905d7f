// Package logs writes and reads container logs in the CRI log format, as
// kubelet and containerd's CRI plugin do, for containers and unikernels alike.
//
// # Layout
//
// Each pod has a directory under the agent's log root, named as kubelet names
// it, and each run of each container one file in it, named for the run's
// restart count:
//
//	/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log
//
// [PodDir] and [Path] build these names; [Latest] and [Previous] find the
// files of a container's current and previous runs. A new run gets a new
// file. A run's file is rotated as kubelet rotates it ([Rotation],
// [OpenRotating]): past its maximum size it is renamed with the time
// appended and a new file takes its place, and only the newest files are
// kept:
//
//	<restart>.log  <restart>.log.20240501-100000  <restart>.log.20240501-100412 …
//
// # Format
//
// A log file is a sequence of records, one a line, in the order they were
// written:
//
//	2024-05-01T10:00:00.123456789Z stdout F hello world
//	2024-05-01T10:00:00.2Z stderr P first 16 KiB of a long line…
//	2024-05-01T10:00:00.2Z stderr F …and the rest of it
//
// The fields, separated by single spaces: the time the output was received,
// in RFC 3339 with nanoseconds (UTC, trailing zeros trimmed); the stream,
// "stdout" or "stderr"; the tag, "F" for a record that ends a line or "P" for
// a partial one that the next record of the same stream continues; and the
// content, the rest of the line up to the newline. The content has no line
// terminator of its own: a container's "\n" or "\r\n" ends the record with an
// F tag. A line longer than [MaxLine] bytes is cut into P records of MaxLine
// bytes and a final F record, and output still unterminated when a stream
// closes is written as a last P record (as containerd's CRI logger does).
// Both streams of a container go into the same file; each record is written
// whole, so records of the two streams interleave but never mix.
//
// # Reading
//
// [Read] and [NewReader] show a log as `kubectl logs` does: the contents of
// the records, P records joined with the records of the same stream that
// complete them, one output line per logical line, with the options of
// [Options] (tail, since, timestamps, byte limit, follow). Lines that do not
// parse as records are skipped. A rotated log reads as one, its rotated files
// first. The Docker JSON log format, which kubelet
// also reads, is not supported: the agent writes only CRI logs.
package logs
