// Command cart-stand-in is the lab's STAND-IN for Online Boutique's cartservice, which is C#: no .NET SDK or
// NuGet feed is reachable where the lab is built, so the real image cannot be built here. Real installs run
// the upstream cartservice image that app-repo's pipeline builds from its own Dockerfile.
//
// It serves the same gRPC API, hipstershop.CartService of protos/demo.proto (through the frontend's code
// generated from it, upstream's), and the gRPC health service the Deployment's probes ask, on PORT (7070).
// Carts live in Redis at REDIS_ADDR, as the real service keeps them: a hash per user whose "cart" field holds
// the Cart message serialized. Adds are optimistic transactions (WATCH), so replicas never lose an item.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	pb "github.com/GoogleCloudPlatform/microservices-demo/src/frontend/genproto"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

const (
	cartField   = "cart"
	maxAttempts = 100
)

type cartServer struct {
	pb.UnimplementedCartServiceServer
	redis *redis.Client
}

func (s *cartServer) load(ctx context.Context, reader redis.Cmdable, userID string) (*pb.Cart, error) {
	cart := &pb.Cart{UserId: userID}
	data, err := reader.HGet(ctx, userID, cartField).Bytes()
	if errors.Is(err, redis.Nil) {
		return cart, nil
	}
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "cannot read the cart from Redis: %v", err)
	}
	if err := proto.Unmarshal(data, cart); err != nil {
		return nil, status.Errorf(codes.Internal, "the cart in Redis is not a Cart message: %v", err)
	}
	return cart, nil
}

func (s *cartServer) AddItem(ctx context.Context, req *pb.AddItemRequest) (*pb.Empty, error) {
	item := req.GetItem()
	if req.GetUserId() == "" || item.GetProductId() == "" || item.GetQuantity() <= 0 {
		return nil, status.Error(codes.InvalidArgument, "user_id, item.product_id and a positive quantity are required")
	}
	add := func(tx *redis.Tx) error {
		cart, err := s.load(ctx, tx, req.GetUserId())
		if err != nil {
			return err
		}
		found := false
		for _, existing := range cart.Items {
			if existing.ProductId == item.ProductId {
				existing.Quantity += item.Quantity
				found = true
			}
		}
		if !found {
			cart.Items = append(cart.Items, &pb.CartItem{ProductId: item.ProductId, Quantity: item.Quantity})
		}
		data, err := proto.Marshal(cart)
		if err != nil {
			return err
		}
		_, err = tx.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			return pipe.HSet(ctx, req.GetUserId(), cartField, data).Err()
		})
		return err
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		err := s.redis.Watch(ctx, add, req.GetUserId())
		if errors.Is(err, redis.TxFailedErr) {
			// Another request changed this cart meanwhile: read it again, after a random pause so that
			// the requests racing for it do not collide again in step.
			select {
			case <-ctx.Done():
				return nil, status.FromContextError(ctx.Err()).Err()
			case <-time.After(time.Duration(rand.Int64N(int64(5*time.Millisecond))) * time.Duration(attempt+1)):
			}
			continue
		}
		if err != nil {
			if _, ok := status.FromError(err); ok {
				return nil, err
			}
			return nil, status.Errorf(codes.FailedPrecondition, "cannot write the cart to Redis: %v", err)
		}
		return &pb.Empty{}, nil
	}
	return nil, status.Errorf(codes.Aborted, "the cart kept changing under %d attempts to add the item", maxAttempts)
}

func (s *cartServer) GetCart(ctx context.Context, req *pb.GetCartRequest) (*pb.Cart, error) {
	return s.load(ctx, s.redis, req.GetUserId())
}

func (s *cartServer) EmptyCart(ctx context.Context, req *pb.EmptyCartRequest) (*pb.Empty, error) {
	if err := s.redis.Del(ctx, req.GetUserId()).Err(); err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "cannot empty the cart in Redis: %v", err)
	}
	return &pb.Empty{}, nil
}

// watchRedis keeps the health service's status in step with Redis: the real service is unhealthy without it.
func watchRedis(ctx context.Context, client *redis.Client, checker *health.Server, every time.Duration) {
	for {
		serving := healthpb.HealthCheckResponse_SERVING
		if err := client.Ping(ctx).Err(); err != nil {
			serving = healthpb.HealthCheckResponse_NOT_SERVING
		}
		checker.SetServingStatus("", serving)
		checker.SetServingStatus("hipstershop.CartService", serving)
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

func serve(ctx context.Context, listener net.Listener, redisAddr string) error {
	client := redis.NewClient(&redis.Options{Addr: redisAddr, DialTimeout: 2 * time.Second})
	defer client.Close()
	server := grpc.NewServer()
	pb.RegisterCartServiceServer(server, &cartServer{redis: client})
	checker := health.NewServer()
	healthpb.RegisterHealthServer(server, checker)
	go watchRedis(ctx, client, checker, 5*time.Second)
	go func() {
		<-ctx.Done()
		server.GracefulStop()
	}()
	log.Printf("cart stand-in (not the C# cartservice) serving hipstershop.CartService on %s, carts in Redis at %s",
		listener.Addr(), redisAddr)
	return server.Serve(listener)
}

func main() {
	port := os.Getenv("PORT")
	if port == "" {
		port = "7070"
	}
	redisAddr := os.Getenv("REDIS_ADDR")
	if redisAddr == "" {
		log.Fatal("REDIS_ADDR is not set: the cart stand-in keeps carts in Redis (host:port)")
	}
	listener, err := net.Listen("tcp", fmt.Sprintf(":%s", port))
	if err != nil {
		log.Fatalf("cannot listen on port %s: %v", port, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, listener, redisAddr); err != nil {
		log.Fatalf("serving: %v", err)
	}
}
