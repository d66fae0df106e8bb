package console

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"net/url"
	"time"

	"rsc.io/qr"

	"github.com/nhsid/nhsid/authn"
	"github.com/nhsid/nhsid/policy"
)

// inviteCookie carries a just-issued invite from the POST to the page that
// shows it (POST-redirect-GET), sealed under a key derived from the
// session, for a few minutes and only on /ra/ paths.
const (
	inviteCookie    = "nhsid_ra_invite"
	inviteCookieTTL = 5 * time.Minute
)

// sealedInvite is the cookie's plaintext.
type sealedInvite struct {
	UID     string    `json:"uid"`
	URL     string    `json:"url"`
	Expires time.Time `json:"exp"`
}

func inviteAEAD(sess *authn.Session) (cipher.AEAD, error) {
	m := hmac.New(sha256.New, sess.IDHash)
	m.Write([]byte("nhsid ra console invite v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("invite cookie: %w", err)
	}
	return cipher.NewGCM(block)
}

func sealInvite(sess *authn.Session, in sealedInvite) (string, error) {
	aead, err := inviteAEAD(sess)
	if err != nil {
		return "", err
	}
	plain, err := json.Marshal(in)
	if err != nil {
		return "", fmt.Errorf("invite cookie: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("invite cookie: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte(in.UID))), nil
}

func openInvite(sess *authn.Session, uid, value string) (sealedInvite, error) {
	var out sealedInvite
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return out, fmt.Errorf("invite cookie: %w", err)
	}
	aead, err := inviteAEAD(sess)
	if err != nil {
		return out, err
	}
	if len(raw) < aead.NonceSize() {
		return out, errors.New("invite cookie: too short")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(uid))
	if err != nil {
		return out, fmt.Errorf("invite cookie: %w", err)
	}
	if err := json.Unmarshal(plain, &out); err != nil {
		return out, fmt.Errorf("invite cookie: %w", err)
	}
	if out.UID != uid {
		return out, errors.New("invite cookie: another person")
	}
	return out, nil
}

func (c *Console) setInviteCookie(w http.ResponseWriter, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: inviteCookie, Value: value, Path: "/ra/", MaxAge: maxAge,
		HttpOnly: true, Secure: c.SecureCookies, SameSite: http.SameSiteStrictMode})
}

// handleInvite issues an enrolment invite and redirects to the page that
// shows it once.
func (c *Console) handleInvite(w http.ResponseWriter, r *http.Request) {
	who := c.enterPost(w, r)
	if who == nil {
		return
	}
	ctx := r.Context()
	uid := r.PathValue("uid")
	p, err := c.Policy.Store.GetPerson(ctx, uid)
	if err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	if err := c.Policy.CheckPerson(ctx, who.actor, policy.ActIssueInvite, uid); err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	if p.Status != policy.StatusActive {
		c.renderPerson(w, r, who, uid, http.StatusConflict, []string{"This person's account is closed, so no invite can be issued."}, "", map[string]string{})
		return
	}
	_, link, exp, err := c.Invites.IssueInvite(ctx, uid, who.actor.Name())
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	if err := c.record(ctx, who, "invite", uid, uid, "", map[string]any{"expires_at": exp.UTC().Format(time.RFC3339)}); err != nil {
		c.unavailable(w, r, err)
		return
	}
	sealed, err := sealInvite(who.sess, sealedInvite{UID: uid, URL: link, Expires: exp.UTC()})
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	c.setInviteCookie(w, sealed, int(inviteCookieTTL.Seconds()))
	http.Redirect(w, r, "/ra/people/"+url.PathEscape(uid)+"/invite", http.StatusSeeOther)
}

// handleShowInvite shows the invite just issued, as a link to copy and a QR
// code; it is shown once.
func (c *Console) handleShowInvite(w http.ResponseWriter, r *http.Request) {
	who := c.enter(w, r)
	if who == nil {
		return
	}
	uid := r.PathValue("uid")
	p, err := c.Policy.Store.GetPerson(r.Context(), uid)
	if err == nil {
		err = c.Policy.CheckPerson(r.Context(), who.actor, policy.ActViewPerson, uid)
	}
	var fe *policy.ForbiddenError
	if errors.As(err, &fe) {
		c.errorPage(w, r, http.StatusForbidden, "You cannot manage this person", fe.Reason)
		return
	}
	if err != nil {
		c.fail(w, r, who, uid, err, map[string]string{})
		return
	}
	data := map[string]any{"Title": "Enrolment invite for " + p.DisplayName, "Person": p}
	ck, err := r.Cookie(inviteCookie)
	var inv sealedInvite
	if err == nil {
		inv, err = openInvite(who.sess, uid, ck.Value)
	}
	if err == nil && c.now().Before(inv.Expires) {
		img, qerr := qrDataURI(inv.URL)
		if qerr != nil {
			c.unavailable(w, r, qerr)
			return
		}
		data["URL"] = inv.URL
		data["QR"] = img
		data["Expires"] = inv.Expires.Format("15:04 MST on 2 January 2006")
		c.setInviteCookie(w, "", -1)
	}
	c.render(w, r, http.StatusOK, "ra_invite", data)
}

// qrDataURI renders text as a QR code PNG in a data: URI (CSP img-src
// allows data:).
func qrDataURI(text string) (template.URL, error) {
	code, err := qr.Encode(text, qr.M)
	if err != nil {
		return "", fmt.Errorf("qr: %w", err)
	}
	const scale, quiet = 6, 4
	size := (code.Size + 2*quiet) * scale
	img := image.NewGray(image.Rect(0, 0, size, size))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y := 0; y < code.Size; y++ {
		for x := 0; x < code.Size; x++ {
			if !code.Black(x, y) {
				continue
			}
			for dy := 0; dy < scale; dy++ {
				for dx := 0; dx < scale; dx++ {
					img.SetGray((x+quiet)*scale+dx, (y+quiet)*scale+dy, color.Gray{})
				}
			}
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return "", fmt.Errorf("qr: %w", err)
	}
	// The URI is built here from a PNG, not from input, so it is safe.
	return template.URL("data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())), nil
}
