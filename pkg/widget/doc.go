// Package widget serves widget.js, the dependency-free script a web page
// includes to let its users vote thumbs up or down on an LLM answer: it
// renders the buttons under each element that carries a response id and a
// per-response token (pkg/token), and sends the vote to the proxy's
// POST /feedback across origins (the proxy's --cors-allowed-origins).
//
// The script is embedded in the binary; Handler serves it with a short
// max-age and an ETag, so a page revalidates it cheaply and picks up a new
// version within minutes of an upgrade. widget.js documents its own use at
// the top of the file.
package widget
