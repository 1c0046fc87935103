package main

// Run by tests/validation/test_boutique_images.py with REDIS_ADDR pointing at a real redis-server (Debian's)
// on loopback: the stand-in is checked over real gRPC against real Redis.

import (
	"context"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	pb "github.com/GoogleCloudPlatform/microservices-demo/src/frontend/genproto"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/proto"
)

func start(t *testing.T, redisAddr string) *grpc.ClientConn {
	t.Helper()
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, listener, redisAddr) }()
	conn, err := grpc.NewClient(listener.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	return conn
}

func redisAddr(t *testing.T) string {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		t.Fatal("REDIS_ADDR is not set: these tests need a real Redis")
	}
	return addr
}

func servingStatus(t *testing.T, conn *grpc.ClientConn, service string, want healthpb.HealthCheckResponse_ServingStatus) {
	t.Helper()
	client := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(10 * time.Second)
	var last healthpb.HealthCheckResponse_ServingStatus
	for time.Now().Before(deadline) {
		response, err := client.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
		if err == nil {
			last = response.Status
			if last == want {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("health of %q: %v, want %v within 10s", service, last, want)
}

func TestCartsLiveInRedisAsTheRealServiceKeepsThem(t *testing.T) {
	conn := start(t, redisAddr(t))
	cart := pb.NewCartServiceClient(conn)
	ctx := context.Background()
	user := "user-" + time.Now().Format("150405.000000000")
	for _, item := range []*pb.CartItem{{ProductId: "OLJCESPC7Z", Quantity: 1}, {ProductId: "66VCHSJNUP", Quantity: 2},
		{ProductId: "OLJCESPC7Z", Quantity: 3}} {
		if _, err := cart.AddItem(ctx, &pb.AddItemRequest{UserId: user, Item: item}); err != nil {
			t.Fatalf("AddItem %v: %v", item, err)
		}
	}
	got, err := cart.GetCart(ctx, &pb.GetCartRequest{UserId: user})
	if err != nil {
		t.Fatal(err)
	}
	want := &pb.Cart{UserId: user, Items: []*pb.CartItem{{ProductId: "OLJCESPC7Z", Quantity: 4},
		{ProductId: "66VCHSJNUP", Quantity: 2}}}
	if !proto.Equal(got, want) {
		t.Fatalf("GetCart: %v, want %v", got, want)
	}

	// What Redis holds: the user's hash, its "cart" field the serialized Cart.
	client := redis.NewClient(&redis.Options{Addr: redisAddr(t)})
	defer client.Close()
	data, err := client.HGet(ctx, user, "cart").Bytes()
	if err != nil {
		t.Fatalf("HGET %s cart: %v", user, err)
	}
	stored := &pb.Cart{}
	if err := proto.Unmarshal(data, stored); err != nil || !proto.Equal(stored, want) {
		t.Fatalf("Redis holds %v (%v), want %v", stored, err, want)
	}

	if _, err := cart.EmptyCart(ctx, &pb.EmptyCartRequest{UserId: user}); err != nil {
		t.Fatal(err)
	}
	got, err = cart.GetCart(ctx, &pb.GetCartRequest{UserId: user})
	if err != nil || len(got.Items) != 0 || got.UserId != user {
		t.Fatalf("after EmptyCart: %v (%v), want an empty cart of %s", got, err, user)
	}
	if n, _ := client.Exists(ctx, user).Result(); n != 0 {
		t.Fatalf("EmptyCart left the key %s in Redis", user)
	}
}

func TestConcurrentAddsFromTwoReplicasLoseNoItem(t *testing.T) {
	replicas := []pb.CartServiceClient{pb.NewCartServiceClient(start(t, redisAddr(t))),
		pb.NewCartServiceClient(start(t, redisAddr(t)))}
	user := "race-" + time.Now().Format("150405.000000000")
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := 0; i < 40; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := replicas[i%2].AddItem(context.Background(),
				&pb.AddItemRequest{UserId: user, Item: &pb.CartItem{ProductId: "2ZYFJ3GM2N", Quantity: 1}})
			errs <- err
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("AddItem: %v", err)
		}
	}
	got, err := replicas[0].GetCart(context.Background(), &pb.GetCartRequest{UserId: user})
	if err != nil || len(got.Items) != 1 || got.Items[0].Quantity != 40 {
		t.Fatalf("after 40 concurrent adds of one item: %v (%v), want quantity 40", got, err)
	}
}

func TestInvalidItemsAreRefused(t *testing.T) {
	cart := pb.NewCartServiceClient(start(t, redisAddr(t)))
	for _, item := range []*pb.CartItem{{ProductId: "", Quantity: 1}, {ProductId: "OLJCESPC7Z", Quantity: 0}} {
		if _, err := cart.AddItem(context.Background(), &pb.AddItemRequest{UserId: "u", Item: item}); err == nil {
			t.Fatalf("AddItem %v: accepted, want InvalidArgument", item)
		}
	}
}

func TestHealthFollowsRedis(t *testing.T) {
	servingStatus(t, start(t, redisAddr(t)), "", healthpb.HealthCheckResponse_SERVING)
	// A Redis nobody listens on: what a probe sees when redis-cart is down.
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := closed.Addr().String()
	closed.Close()
	conn := start(t, addr)
	servingStatus(t, conn, "", healthpb.HealthCheckResponse_NOT_SERVING)
	servingStatus(t, conn, "hipstershop.CartService", healthpb.HealthCheckResponse_NOT_SERVING)
}
