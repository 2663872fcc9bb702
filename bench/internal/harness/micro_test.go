package harness

import "testing"

func TestParseBench(t *testing.T) {
	out := parseBench(`goos: linux
BenchmarkReadMessage/gorilla/64-2         	    2000	       237.6 ns/op	 269.41 MB/s	     520 B/op	       2 allocs/op
BenchmarkFrameHeader/gobwas/encode-2      	 1000000	        12.5 ns/op	       0 B/op	       0 allocs/op
PASS`, "")
	if len(out) != 2 {
		t.Fatalf("%+v", out)
	}
	if m := out[0]; m.Bench != "ReadMessage" || m.Lib != "gorilla" || m.Case != "64" || m.NsOp != 237.6 || m.BytesOp != 520 || m.AllocsOp != 2 || m.MBs != 269.41 {
		t.Errorf("%+v", m)
	}
	if m := out[1]; m.Bench != "FrameHeader" || m.Lib != "gobwas" || m.Case != "encode" {
		t.Errorf("%+v", m)
	}
	ours := parseBench("BenchmarkMask/1024-2   100  50.0 ns/op  20000 MB/s  0 B/op  0 allocs/op\n", "duplex")
	if len(ours) != 1 || ours[0].Lib != "duplex" || ours[0].Case != "1024" || ours[0].Bench != "Mask" {
		t.Errorf("%+v", ours)
	}
}
