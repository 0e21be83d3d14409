#!/usr/bin/perl
# Verify the DKIM signatures of the message on stdin with Mail::DKIM (Debian's
# libmail-dkim-perl), the key lookup answered from a file instead of DNS:
#
#   perl tests/dkimverify.pl KEYS < message.eml
#
# KEYS holds one "<selector>._domainkey.<domain> <TXT record>" per line; any other
# name is NXDOMAIN. Prints one line per signature, "<result> d=<domain> s=<selector>
# a=<algorithm> <detail>", then "result: <overall>". Used by tests/test_dkim.py.
use strict;
use warnings;
use Mail::DKIM::Verifier;
use Mail::DKIM::DNS;
use Net::DNS;

package LocalKeys;

sub new {
    my ( $class, $path ) = @_;
    my %records;
    open my $fh, '<', $path or die "cannot read $path: $!\n";
    while ( my $line = <$fh> ) {
        chomp $line;
        next unless $line =~ /^(\S+)\s+(.+)$/;
        $records{ lc $1 } = $2;
    }
    close $fh;
    return bless { records => \%records, error => 'NOERROR' }, $class;
}

sub send {
    my ( $self, $name, $type ) = @_;
    my $packet = Net::DNS::Packet->new( $name, $type, 'IN' );
    my $record = $self->{records}{ lc $name };
    if ( defined $record && uc $type eq 'TXT' ) {
        # a TXT record is strings of at most 255 octets, joined by the reader
        my @strings = ( $record =~ /(.{1,255})/gs );
        $packet->push( answer => Net::DNS::RR->new( name => $name, type => 'TXT', txtdata => [@strings] ) );
    }
    else {
        $packet->header->rcode('NXDOMAIN');
    }
    return $packet;
}

sub errorstring { return $_[0]{error} }

package main;

die "usage: $0 KEYS < message\n" unless @ARGV == 1;
Mail::DKIM::DNS::resolver( LocalKeys->new( $ARGV[0] ) );
binmode STDIN;
my $data = do { local $/; <STDIN> };
my $dkim = Mail::DKIM::Verifier->new();
$dkim->PRINT($data);
$dkim->CLOSE;
foreach my $signature ( $dkim->signatures ) {
    printf "%s d=%s s=%s a=%s %s\n", $signature->result, $signature->domain // '',
      $signature->selector // '', $signature->algorithm // '', $signature->result_detail // '';
}
print "result: ", $dkim->result, "\n";
