package feedback

import "net/http"

// openAPIHandler serves the OpenAPI document of the feedback API.
// Placeholder until the document lands.
func openAPIHandler() http.Handler { return http.NotFoundHandler() }
