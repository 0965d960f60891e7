package s3

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/encrypt"
)

// Credentials are static keys from the plugin's settings (S3_ACCESS_KEY_ID,
// S3_SECRET_ACCESS_KEY, S3_SESSION_TOKEN, or their _FILE variants), never
// from log-opts, which `docker inspect` shows. Without them the sink asks
// the AWS chain: the AWS_* variables, the shared credentials file, then
// the instance's role (IMDS, ECS, or web identity with
// AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN). Formatting them prints no
// secret.
type Credentials struct {
	AccessKeyID, SecretAccessKey, SessionToken string
}

// String describes c without its secrets.
func (c Credentials) String() string {
	if c.AccessKeyID == "" {
		return "the AWS chain (environment, instance role)"
	}
	return fmt.Sprintf("access key %q (secret redacted)", c.AccessKeyID)
}

// GoString describes c without its secrets, for %#v.
func (c Credentials) GoString() string { return "s3.Credentials{" + c.String() + "}" }

// LogValue describes c without its secrets, for log/slog.
func (c Credentials) LogValue() slog.Value { return slog.StringValue(c.String()) }

func (c Credentials) validate() error {
	if (c.AccessKeyID == "") != (c.SecretAccessKey == "") {
		return fmt.Errorf("s3 credentials: set both S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY, or neither")
	}
	if c.SessionToken != "" && c.AccessKeyID == "" {
		return fmt.Errorf("s3 credentials: S3_SESSION_TOKEN needs S3_ACCESS_KEY_ID and S3_SECRET_ACCESS_KEY")
	}
	return nil
}

// minioStore writes objects with minio-go, whose client speaks to Amazon
// S3 and to S3-compatible stores alike.
type minioStore struct {
	client *minio.Client
	tr     *http.Transport
	bucket string
	opts   minio.PutObjectOptions
}

// newMinio returns the store cfg names. It does not touch the network.
func newMinio(cfg Config) (*minioStore, error) {
	if err := cfg.Credentials.validate(); err != nil {
		return nil, err
	}
	creds := credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{}, &credentials.FileAWSCredentials{}, &credentials.IAM{},
	})
	if c := cfg.Credentials; c.AccessKeyID != "" {
		creds = credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, c.SessionToken)
	}
	// Trusts what the host trusts: no RootCAs, so the system's (the
	// ca-certs mount, or the embedded roots).
	tr, err := minio.DefaultTransport(!cfg.Insecure)
	if err != nil {
		return nil, fmt.Errorf("s3 transport: %w", err)
	}
	lookup := minio.BucketLookupAuto
	if cfg.PathStyle {
		lookup = minio.BucketLookupPath
	}
	client, err := minio.New(cfg.Endpoint, &minio.Options{
		Creds: creds, Secure: !cfg.Insecure, Region: cfg.Region, BucketLookup: lookup, Transport: tr,
	})
	if err != nil {
		return nil, fmt.Errorf("s3 client for %s: %w", cfg.Endpoint, err)
	}
	opts := minio.PutObjectOptions{
		// As Fluentd's out_s3 writes .gz objects: a gzip file, not a
		// transfer encoding that clients would undo on download.
		ContentType:  "application/gzip",
		StorageClass: cfg.StorageClass,
		// One PUT: an object is at most ObjectSize compressed, and a
		// single request is never visible half-written.
		DisableMultipart: true,
		SendContentMd5:   true,
	}
	switch cfg.SSE {
	case SSES3:
		opts.ServerSideEncryption = encrypt.NewSSE()
	case SSEKMS:
		opts.ServerSideEncryption, err = encrypt.NewSSEKMS(cfg.SSEKMSKeyID, nil)
		if err != nil {
			return nil, fmt.Errorf("s3 sse-kms: %w", err)
		}
	}
	return &minioStore{client: client, tr: tr, bucket: cfg.Bucket, opts: opts}, nil
}

func (m *minioStore) put(ctx context.Context, key string, body []byte) error {
	_, err := m.client.PutObject(ctx, m.bucket, key, bytes.NewReader(body), int64(len(body)), m.opts)
	if err != nil {
		return fmt.Errorf("put s3://%s/%s: %w", m.bucket, key, err)
	}
	return nil
}

func (m *minioStore) close() { m.tr.CloseIdleConnections() }
