package kalshi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// CancelOrdersPath is Kalshi's "Cancel All Orders" endpoint,
// DELETE /portfolio/events/orders, as GET /account/endpoint_costs would list
// it.
const CancelOrdersPath = apiPrefix + "/portfolio/events/orders"

// MaxCancelOrders is the most resting orders one CancelOrders call cancels;
// when more match, which ones is arbitrary and a second call cancels more.
const MaxCancelOrders = 10000

// MaxSubaccount is the highest subaccount number: 0 is the primary account,
// 1 to 63 its subaccounts.
const MaxSubaccount = 63

// ErrInvalidSubaccount is returned, wrapped, by [Client.CancelOrders] for a
// subaccount outside 0 to MaxSubaccount, without any request.
var ErrInvalidSubaccount = errors.New("invalid subaccount: want 0 to 63")

// CancelOrders cancels the member's resting event-market orders with
// DELETE /portfolio/events/orders and returns how many it cancelled:
// those of subaccount *subaccount (0 the primary account, 1-63), or of
// every subaccount when subaccount is nil. One call cancels at most
// MaxCancelOrders; Kalshi may also cancel orders placed in the minute after
// it. The call costs write tokens: as many as a batch cancel of the largest
// size the account's tier allows (see [CancelBudget]).
//
// The count is the length of the answer's "orders" list; a 2xx answer
// without one is an *APIError, as it is not Kalshi's.
func (c *Client) CancelOrders(ctx context.Context, subaccount *int) (int, error) {
	path := "/portfolio/events/orders"
	if subaccount != nil {
		if *subaccount < 0 || *subaccount > MaxSubaccount {
			return 0, fmt.Errorf("kalshi: cancel orders of subaccount %d: %w", *subaccount, ErrInvalidSubaccount)
		}
		path += "?subaccount=" + strconv.Itoa(*subaccount)
	}
	resp, err := c.send(ctx, http.MethodDelete, path)
	if err != nil {
		return 0, fmt.Errorf("kalshi: cancel orders: %w", err)
	}
	defer closeBody(resp)
	var v struct {
		Orders *[]json.RawMessage `json:"orders"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxBody)).Decode(&v); err != nil || v.Orders == nil {
		return 0, fmt.Errorf("kalshi: cancel orders: %w", &APIError{StatusCode: resp.StatusCode, Message: "the answer holds no orders list"})
	}
	return len(*v.Orders), nil
}
