-- The newsletter's tables as `metadata.create_all` made them on postgresql at commit cb3879b
-- (store/schema.py of that commit, compiled by SQLAlchemy). Frozen: never regenerate.

CREATE TABLE editions (
	id SERIAL NOT NULL,
	date DATE NOT NULL,
	subject TEXT NOT NULL,
	preheader TEXT NOT NULL,
	html TEXT NOT NULL,
	text TEXT NOT NULL,
	slot_token VARCHAR(64) NOT NULL,
	article_count INTEGER NOT NULL,
	status VARCHAR(16) NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	sent_at TIMESTAMP WITHOUT TIME ZONE,
	warnings TEXT,
	skipped TEXT,
	source_stamp VARCHAR(64),
	PRIMARY KEY (id),
	UNIQUE (date)
);

CREATE TABLE locks (
	name VARCHAR(100) NOT NULL,
	holder VARCHAR(200) NOT NULL,
	acquired_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	heartbeat_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE subscribers (
	id SERIAL NOT NULL,
	email VARCHAR(320) NOT NULL,
	email_key VARCHAR(320) NOT NULL,
	name VARCHAR(200) NOT NULL,
	status VARCHAR(16) NOT NULL,
	source VARCHAR(100) NOT NULL,
	bounce_count INTEGER NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	confirmed_at TIMESTAMP WITHOUT TIME ZONE,
	unsubscribed_at TIMESTAMP WITHOUT TIME ZONE,
	confirmation_sent_at TIMESTAMP WITHOUT TIME ZONE,
	consent_at TIMESTAMP WITHOUT TIME ZONE,
	consent_ip VARCHAR(64),
	consent_user_agent VARCHAR(500),
	PRIMARY KEY (id),
	UNIQUE (email_key)
);

CREATE INDEX ix_subscribers_status ON subscribers (status);

CREATE TABLE deliveries (
	id SERIAL NOT NULL,
	edition_id INTEGER NOT NULL,
	subscriber_id INTEGER NOT NULL,
	email VARCHAR(320) NOT NULL,
	status VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	last_reply TEXT NOT NULL,
	claimed_by VARCHAR(100),
	lease_until TIMESTAMP WITHOUT TIME ZONE,
	next_attempt_at TIMESTAMP WITHOUT TIME ZONE,
	first_attempt_at TIMESTAMP WITHOUT TIME ZONE,
	updated_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	CONSTRAINT uq_delivery_edition_subscriber UNIQUE (edition_id, subscriber_id),
	FOREIGN KEY(edition_id) REFERENCES editions (id),
	FOREIGN KEY(subscriber_id) REFERENCES subscribers (id)
);

CREATE INDEX ix_deliveries_claim ON deliveries (edition_id, status, id);

CREATE TABLE test_sends (
	id SERIAL NOT NULL,
	edition_id INTEGER NOT NULL,
	email VARCHAR(320) NOT NULL,
	status VARCHAR(16) NOT NULL,
	last_reply TEXT NOT NULL,
	created_at TIMESTAMP WITHOUT TIME ZONE NOT NULL,
	PRIMARY KEY (id),
	FOREIGN KEY(edition_id) REFERENCES editions (id)
);
