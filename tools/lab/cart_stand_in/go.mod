// The lab's stand-in for Online Boutique's C# cartservice (see main.go). The frontend's generated gRPC code
// comes from the upstream source snapshot (SOURCES.md): tools/gobuild.py points the replace below at it.
module gitops-lab.invalid/cart-stand-in

go 1.26.0

require (
	github.com/GoogleCloudPlatform/microservices-demo/src/frontend v0.0.0
	github.com/redis/go-redis/v9 v9.23.0
	google.golang.org/grpc v1.82.0
	google.golang.org/protobuf v1.36.11
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/net v0.55.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
	golang.org/x/text v0.37.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260526163538-3dc84a4a5aaa // indirect
)

replace github.com/GoogleCloudPlatform/microservices-demo/src/frontend => ./upstream-frontend
