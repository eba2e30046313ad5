// Package gen holds the code protoc generates from ../proto.
//
// Regenerate (needs Debian's protobuf-compiler, protoc-gen-go v1.36.12 and
// protoc-gen-go-grpc v1.5.1 on PATH) from examples/emojivoto:
//
//	protoc -I proto --go_out=gen/emojivotov1 --go_opt=paths=source_relative \
//	  --go-grpc_out=gen/emojivotov1 --go-grpc_opt=paths=source_relative proto/emojivoto/v1/*.proto
//
// then move the files from gen/emojivotov1/emojivoto/v1 up to gen/emojivotov1.
package gen
