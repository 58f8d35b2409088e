#!/usr/bin/perl
# Summarizes `perf script -F comm,pid,ip,sym` output of backends running
# the extension's write path into where the time goes: per SQL function
# (track / set_status / untrack / outside them) and per executor phase or
# component (first matching frame of a list, leaf side first).  Usage: perf script -i perf.data -F comm,pid,ip,sym | profile_summary.pl
use strict;
use warnings;

my (%by_cat, %by_op, %by_frame_incl, $total);
my @stack;


sub flush_sample {
	return unless @stack;
	$total++;
	# @stack is leaf first.
	my @syms = map { $_->[1] } @stack;
	my $op = 'outside the functions';
	for my $s (@syms) {
		if ($s =~ /^(presence_\w+)$/ && $s !~ /^presence_(execute|change_one|change_locked|change_row|insert_row|plan|text_arg|notify|encode_diff|check_diff_fits|entry_from_tuple|append_entry_fields|worker_arg|is_connection_worker|now_s|record_diff|finish_diff|find_by_key|use_worker|spi_connect|table|topic_arg|fd_arg|meta_arg|caller|history_record|current_epoch|check_entry_rules)$/) {
			$op = $1;
		}
	}
	my %has = map { $_ => 1 } @syms;
	my $cat;
	my @rules = (
		[ 'XLogInsert'                => 'WAL (XLogInsert)' ],
		[ 'XLogFlush'                 => 'WAL (XLogFlush)' ],
		[ 'PreCommit_Notify'          => 'NOTIFY: queue insert at commit (PreCommit_Notify)' ],
		[ 'AtCommit_Notify'           => 'NOTIFY: signalling listeners (AtCommit_Notify)' ],
		[ 'LockSharedObject'          => 'commit lock (NOTIFY\'s, taken for the seqs)' ],
		[ 'ExecConstraints'           => 'CHECK constraints (ExecConstraints: re-parsed per statement)' ],
		[ 'ExecCheckIndexConstraints' => 'ON CONFLICT arbiter probe (ExecCheckIndexConstraints)' ],
		[ 'ExecInsertIndexTuples'     => 'index inserts' ],
		[ 'heap_page_prune_opt'       => 'page pruning (HOT chains)' ],
		[ 'GetCachedPlan'             => 'plan cache revalidation (GetCachedPlan)' ],
		[ 'standard_ExecutorStart'    => 'executor start (ExecInitNode...)' ],
		[ 'standard_ExecutorEnd'      => 'executor end' ],
		[ 'standard_ExecutorFinish'   => 'executor finish (CTE / AFTER)' ],
		[ 'presence_xact_callback'    => 'seqs at commit (seq row read and update, diffs finished)' ],
		[ 'index_getnext_slot'        => 'index scans' ],
		[ 'heap_insert'               => 'heap insert' ],
		[ 'heap_update'               => 'heap update' ],
		[ 'heap_delete'               => 'heap delete' ],
		[ 'heap_lock_tuple'           => 'row lock (ON CONFLICT DO UPDATE)' ],
		[ 'SPI_connect'               => 'SPI connect/finish' ],
		[ 'SPI_finish'                => 'SPI connect/finish' ],
		[ 'escape_json'               => 'diff encoding (JSON)' ],
		[ 'presence_encode_diff'      => 'diff encoding (JSON)' ],
		[ 'presence_check_diff_fits'  => 'diff size pre-check' ],
		[ 'Async_Notify'              => 'NOTIFY: Async_Notify (queue in xact)' ],
		[ 'CommitTransactionCommand'  => 'commit (the rest)' ],
		[ 'StartTransactionCommand'   => 'transaction start' ],
		[ 'ProcessGUCArray'           => 'SET search_path of SECURITY DEFINER' ],
		[ 'AtEOXact_GUC'              => 'SET search_path of SECURITY DEFINER' ],
		[ 'secure_read'               => 'client socket I/O' ],
		[ 'secure_write'              => 'client socket I/O' ],
		[ 'pq_getbyte'                => 'client socket I/O' ],
		[ 'pq_flush'                  => 'client socket I/O' ],
		[ 'ReadyForQuery'             => 'client socket I/O' ],
		[ 'exec_bind_message'         => 'bind (top-level statement)' ],
		[ 'WaitLatch'                 => 'waiting' ],
	);
	for my $r (@rules) {
		if ($has{ $r->[0] }) { $cat = $r->[1]; last; }
	}
	$cat //= (grep { /^presence_/ } @syms) ? 'other, inside the functions' : 'other';
	$by_cat{$cat}++;
	$by_op{$op}++;
	$by_cat{"$op / $cat"}++;
	my %seen;
	for my $s (@syms) {
		next if $seen{$s}++ || $s eq '[unknown]';
		$by_frame_incl{$s}++;
	}
	@stack = ();
}

my @lines = <STDIN>;

for my $l (@lines) {
	if ($l =~ /^\S/) {
		flush_sample();
	} elsif ($l =~ /^\s+([0-9a-f]+)\s+(\S+)/) {
		push @stack, [ $1, $2 ];
	} elsif ($l =~ /^\s*$/) {
		flush_sample();
	}
}
flush_sample();

$total ||= 1;
sub show {
	my ($title, $h, $filter, $max) = @_;
	print "== $title\n";
	my $n = 0;
	for my $k (sort { $h->{$b} <=> $h->{$a} } grep { $filter->($_) } keys %$h) {
		printf "%6.1f%%  %s\n", 100 * $h->{$k} / $total, $k;
		last if ++$n >= ($max // 1e9);
	}
	print "\n";
}
print "samples: $total\n\n";
show('by SQL function', \%by_op, sub { 1 });
show('by category (exclusive; first matching frame wins)', \%by_cat, sub { $_[0] !~ m{ / } });
show('by function / category', \%by_cat, sub { $_[0] =~ m{ / } }, 30);
show('inclusive time of named frames (top 60)', \%by_frame_incl, sub { 1 }, 60);
