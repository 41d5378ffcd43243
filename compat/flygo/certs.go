package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"slices"
	"time"

	fly "github.com/superfly/fly-go"
	"github.com/superfly/fly-go/flaps"
)

// certs covers `fly certs add/import/list/show/check/remove` (and remove
// --custom/--acme) through flaps. The hostnames are under .test: aloft's
// managed certificates come from its development CA, which signs only
// reserved names (a real domain needs an ACME issuer aloft does not have yet).
func (r *runner) certs(app string) {
	host, other := "flygo."+app+".test", "flygo2."+app+".test"
	r.listCerts(app, nil, "certs: ListCertificates (none yet)", func(c *checks, out *fly.ListCertificatesResponse) {
		c.equal("len(certificates)", len(out.Certificates), 0)
	})
	r.addCert(app, host)
	r.addCert(app, other)
	r.importCert(app, host)
	r.showCert(app, host, "certs: GetCertificate (custom and managed)", true, []string{"custom", "fly"})
	r.checkCert(app, host)
	r.pageCerts(app, host, other)
	r.deleteCertPart(app, host, "custom", r.client.DeleteCustomCertificate)
	r.showCert(app, host, "certs: GetCertificate (after DeleteCustomCertificate)", true, []string{"fly"})
	r.deleteCertPart(app, host, "acme", r.client.DeleteACMECertificate)
	r.showCert(app, host, "certs: GetCertificate (after DeleteACMECertificate)", false, []string{})
	for _, h := range []string{host, other} {
		ctx, cancel := r.stepCtx(30 * time.Second)
		r.report("certs: DeleteCertificate "+h, r.client.DeleteCertificate(ctx, app, h))
		cancel()
	}
	r.listCerts(app, nil, "certs: ListCertificates (after DeleteCertificate)", func(c *checks, out *fly.ListCertificatesResponse) {
		c.equal("len(certificates)", len(out.Certificates), 0)
		c.equal("total_count", out.TotalCount, 0)
	})
}

func (r *runner) listCerts(app string, opts *flaps.ListCertificatesOpts, step string, judge func(*checks, *fly.ListCertificatesResponse)) *fly.ListCertificatesResponse {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.ListCertificates(ctx, app, opts)
	if !r.report(step, err) {
		return nil
	}
	var c checks
	judge(&c, out)
	r.verify(step+" response fields", c)
	return out
}

// pageCerts lists one hostname a page (limit 1, the cursor of the page
// before) and with a filter, judging the summaries.
func (r *runner) pageCerts(app, host, other string) {
	first := r.listCerts(app, &flaps.ListCertificatesOpts{Limit: 1}, "certs: ListCertificates (limit 1)", func(c *checks, out *fly.ListCertificatesResponse) {
		c.equal("len(certificates)", len(out.Certificates), 1)
		c.equal("total_count", out.TotalCount, 2)
		c.nonEmpty("next_cursor", out.NextCursor)
		if len(out.Certificates) == 1 {
			s := out.Certificates[0]
			c.equal("certificates[0].hostname", s.Hostname, host)
			c.equal("certificates[0].status", s.Status, "active")
			c.equal("certificates[0].has_custom_certificate", s.HasCustomCertificate, true)
			c.equal("certificates[0].has_fly_certificate", s.HasFlyCertificate, true)
			c.equal("certificates[0].acme_requested", s.AcmeRequested, true)
			if s.CreatedAt.IsZero() || s.UpdatedAt.IsZero() {
				c.add("created_at/updated_at are zero")
			}
		}
	})
	if first == nil || first.NextCursor == "" {
		return
	}
	r.listCerts(app, &flaps.ListCertificatesOpts{Limit: 1, Cursor: first.NextCursor}, "certs: ListCertificates (cursor)", func(c *checks, out *fly.ListCertificatesResponse) {
		hosts := []string{}
		for _, s := range out.Certificates {
			hosts = append(hosts, s.Hostname)
		}
		c.equal("hostnames", hosts, []string{other})
		c.equal("next_cursor", out.NextCursor, "")
	})
	r.listCerts(app, &flaps.ListCertificatesOpts{Filter: "flygo2."}, "certs: ListCertificates (filter)", func(c *checks, out *fly.ListCertificatesResponse) {
		got := slices.ContainsFunc(out.Certificates, func(s fly.CertificateSummary) bool { return s.Hostname == other })
		c.equal("filtered hostnames", len(out.Certificates) == 1 && got, true)
		c.equal("total_count", out.TotalCount, 1)
	})
}

// addCert is `fly certs add <host>`: POST /certificates/acme {"hostname"}.
func (r *runner) addCert(app, host string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.CreateACMECertificate(ctx, app, fly.CreateCertificateRequest{Hostname: host})
	if r.report("certs: CreateACMECertificate "+host, err) {
		var c checks
		judgeDetail(&c, out, host, true, []string{"fly"})
		r.verify("certs: CreateACMECertificate response fields", c)
	}
}

// importCert is `fly certs import <host> --fullchain --private-key`.
func (r *runner) importCert(app, host string) {
	chain, key, err := selfSigned(host)
	if !r.report("certs: a self-signed certificate for "+host, err) {
		return
	}
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.CreateCustomCertificate(ctx, app, fly.ImportCertificateRequest{
		Hostname: host, Fullchain: chain, PrivateKey: key,
	})
	if r.report("certs: CreateCustomCertificate (POST /certificates/custom)", err) {
		var c checks
		judgeDetail(&c, out, host, true, []string{"custom", "fly"})
		for _, d := range out.Certificates {
			if d.Source == "custom" && (d.ExpiresAt == nil || time.Until(*d.ExpiresAt) < 24*time.Hour) {
				c.add("the custom certificate's expires_at = %v, want about 30 days from now", d.ExpiresAt)
			}
		}
		r.verify("certs: CreateCustomCertificate response fields", c)
	}
}

func (r *runner) showCert(app, host, step string, acme bool, sources []string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.GetCertificate(ctx, app, host)
	if r.report(step, err) {
		var c checks
		judgeDetail(&c, out, host, acme, sources)
		r.verify(step+" response fields", c)
	}
}

func (r *runner) checkCert(app, host string) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	out, err := r.client.CheckCertificate(ctx, app, host)
	if r.report("certs: CheckCertificate (POST /certificates/{host}/check)", err) {
		var c checks
		judgeDetail(&c, out, host, true, []string{"custom", "fly"})
		c.equal("len(validation_errors)", len(out.ValidationErrors), 0)
		r.verify("certs: CheckCertificate response fields", c)
	}
}

func (r *runner) deleteCertPart(app, host, part string, del func(ctx context.Context, app, host string) error) {
	ctx, cancel := r.stepCtx(30 * time.Second)
	defer cancel()
	r.report(fmt.Sprintf("certs: Delete %s certificate (DELETE /certificates/{host}/%s)", part, part), del(ctx, app, host))
}

// judgeDetail checks a CertificateDetailResponse: its hostname, whether a
// managed certificate is requested, the sources of its certificates (each
// active), and an overall status that follows them. aloft checks no DNS, so
// it claims no validation.
func judgeDetail(c *checks, out *fly.CertificateDetailResponse, host string, acme bool, sources []string) {
	c.equal("hostname", out.Hostname, host)
	c.equal("acme_requested", out.AcmeRequested, acme)
	got := []string{}
	for _, d := range out.Certificates {
		got = append(got, d.Source)
		c.equal(d.Source+".status", d.Status, "active")
	}
	c.equal("certificates[].source", got, sources)
	want := "inactive"
	if len(sources) > 0 {
		want = "active"
	}
	c.equal("status", out.Status, want)
	c.equal("validation", out.Validation, fly.CertificateValidation{})
	c.equal("configured", out.Configured, false)
}

// selfSigned makes an ECDSA certificate for host, valid for 30 days (PEM).
func selfSigned(host string) (chain, key string, err error) {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(30 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		return "", "", err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", "", err
	}
	chain = string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	key = string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: pkcs8}))
	return chain, key, nil
}
