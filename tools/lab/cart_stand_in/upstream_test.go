package main

// Online Boutique's Go services from the lab's images, over real gRPC: run by
// tests/boutique/test_images.py, which starts them from their images' files and passes their addresses.

import (
	"context"
	"os"
	"testing"
	"time"

	pb "github.com/GoogleCloudPlatform/microservices-demo/src/frontend/genproto"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func dial(t *testing.T, variable string) *grpc.ClientConn {
	t.Helper()
	addr := os.Getenv(variable)
	if addr == "" {
		t.Skipf("%s is not set: tests/boutique/test_images.py starts the service and sets it", variable)
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	servingStatus(t, conn, "", healthpb.HealthCheckResponse_SERVING)
	return conn
}

func TestProductCatalogServesItsCatalog(t *testing.T) {
	catalog := pb.NewProductCatalogServiceClient(dial(t, "PRODUCT_CATALOG_SERVICE_ADDR"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	products, err := catalog.ListProducts(ctx, &pb.Empty{})
	if err != nil || len(products.Products) == 0 {
		t.Fatalf("ListProducts: %v (%v), want products.json's products", products, err)
	}
	first := products.Products[0]
	got, err := catalog.GetProduct(ctx, &pb.GetProductRequest{Id: first.Id})
	if err != nil || got.Name != first.Name || got.PriceUsd == nil {
		t.Fatalf("GetProduct %s: %v (%v)", first.Id, got, err)
	}
	t.Logf("%d products, the first %s (%s)", len(products.Products), first.Id, first.Name)
}

func TestShippingQuotesAndShips(t *testing.T) {
	shipping := pb.NewShippingServiceClient(dial(t, "SHIPPING_SERVICE_ADDR"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	address := &pb.Address{StreetAddress: "1600 Amphitheatre Parkway", City: "Mountain View", State: "CA",
		Country: "United States", ZipCode: 94043}
	items := []*pb.CartItem{{ProductId: "OLJCESPC7Z", Quantity: 2}}
	quote, err := shipping.GetQuote(ctx, &pb.GetQuoteRequest{Address: address, Items: items})
	if err != nil || quote.CostUsd == nil || quote.CostUsd.CurrencyCode != "USD" {
		t.Fatalf("GetQuote: %v (%v)", quote, err)
	}
	order, err := shipping.ShipOrder(ctx, &pb.ShipOrderRequest{Address: address, Items: items})
	if err != nil || order.TrackingId == "" {
		t.Fatalf("ShipOrder: %v (%v)", order, err)
	}
}

func TestCurrencyConverts(t *testing.T) {
	currency := pb.NewCurrencyServiceClient(dial(t, "CURRENCY_SERVICE_ADDR"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	supported, err := currency.GetSupportedCurrencies(ctx, &pb.Empty{})
	if err != nil || len(supported.CurrencyCodes) < 2 {
		t.Fatalf("GetSupportedCurrencies: %v (%v)", supported, err)
	}
	euros, err := currency.Convert(ctx, &pb.CurrencyConversionRequest{
		From: &pb.Money{CurrencyCode: "USD", Units: 100}, ToCode: "EUR"})
	if err != nil || euros.CurrencyCode != "EUR" || euros.Units <= 0 {
		t.Fatalf("Convert 100 USD to EUR: %v (%v)", euros, err)
	}
	t.Logf("%d currencies; 100 USD = %d.%09d EUR", len(supported.CurrencyCodes), euros.Units, euros.Nanos)
}

func TestPaymentCharges(t *testing.T) {
	payment := pb.NewPaymentServiceClient(dial(t, "PAYMENT_SERVICE_ADDR"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	card := &pb.CreditCardInfo{CreditCardNumber: "4432801561520454", CreditCardCvv: 672,
		CreditCardExpirationYear: int32(time.Now().Year() + 1), CreditCardExpirationMonth: 1}
	charged, err := payment.Charge(ctx, &pb.ChargeRequest{Amount: &pb.Money{CurrencyCode: "USD", Units: 42}, CreditCard: card})
	if err != nil || charged.TransactionId == "" {
		t.Fatalf("Charge with the storefront's sample card: %v (%v)", charged, err)
	}
	card.CreditCardNumber = "1234567890123456"
	if _, err := payment.Charge(ctx, &pb.ChargeRequest{Amount: &pb.Money{CurrencyCode: "USD", Units: 42}, CreditCard: card}); err == nil {
		t.Fatal("Charge with an invalid card number: accepted")
	}
}

func TestAdsServeTheirContext(t *testing.T) {
	ads := pb.NewAdServiceClient(dial(t, "AD_SERVICE_ADDR"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	response, err := ads.GetAds(ctx, &pb.AdRequest{ContextKeys: []string{"kitchen"}})
	if err != nil || len(response.Ads) == 0 {
		t.Fatalf("GetAds for kitchen: %v (%v)", response, err)
	}
	random, err := ads.GetAds(ctx, &pb.AdRequest{})
	if err != nil || len(random.Ads) == 0 {
		t.Fatalf("GetAds without context (random ads): %v (%v)", random, err)
	}
	t.Logf("kitchen: %s", response.Ads[0].Text)
}

func TestCheckoutIsServing(t *testing.T) {
	dial(t, "CHECKOUT_SERVICE_ADDR") // PlaceOrder needs the Node and Python services (not built here yet)
}
